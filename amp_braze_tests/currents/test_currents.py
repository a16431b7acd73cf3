"""Braze Currents: the sensor over a moto S3 server, hourly loads, quarantine, engagement_summary."""

from __future__ import annotations

import datetime as dt
import json
import os
import random

import polars as pl
import pytest

from amp_braze.config import load_config
from amp_braze.currents import fixtures
from amp_braze.currents.cursor import advance
from amp_braze.currents.hours import current_hour, current_hours
from amp_braze.currents.keys import CurrentsFile, hour_of, parse_key
from amp_braze.currents.load import read_avro
from amp_braze.currents.summary import summarize
from amp_braze.definitions import build_defs
from amp_braze_tests.support.currents import NOW, H
from amp_braze_tests.support.paths import SHARED_SAMPLES


def test_key_layouts_are_recognised():
    new = "p/dataexport.prod-01.S3.integration.abc/event_type=users.messages.email.Send/date=2025-04-01-17/version=6/us-01/dataexport.prod-01.S3.integration.abc+0+123456.avro"
    old = "p/dataexport.prod-01.S3.integration.abc/event_type=users.messages.email.Open/date=2025-04-01-18/41/us-01/x+1+2.avro"
    odd = "a/b/event_type=users.behaviors.Purchase/extra=1/date=2025-04-01-19/v=11/x/y/z.avro"
    assert parse_key(new) == CurrentsFile(new, "users.messages.email.Send", "2025-04-01-17")
    assert parse_key(old) == CurrentsFile(old, "users.messages.email.Open", "2025-04-01-18")
    assert parse_key(odd) == CurrentsFile(odd, "users.behaviors.Purchase", "2025-04-01-19")
    modified = dt.datetime(2017, 11, 14, 3, 1, tzinfo=dt.UTC)
    legacy = "Push_Notification_Send/dataexport.S3.integration.599f118afbe76a01c513c63c+2+0000035465.avro"
    assert parse_key(legacy, modified) == CurrentsFile(legacy, None, "2017-11-14-03")
    assert parse_key("p/event_type=x/date=2025-04-01-17/file.json") is None
    assert parse_key("p/event_type=x/date=2025-13-01-17/f.avro") is None


@pytest.mark.slow
def test_sensor_finds_all_layouts_loads_and_dedupes(currents):
    send = currents.events("users.messages.email.Send", 3)
    currents.put("users.messages.email.Send", H[1], send, "new")
    currents.put(
        "users.messages.email.Open", H[1], currents.events("users.messages.email.Open", 2), "old"
    )
    currents.put(
        "users.behaviors.Purchase", H[1], currents.events("users.behaviors.Purchase", 4), "extra"
    )
    currents.put(
        "users.messages.email.Send", H[1], send[:2]
    )  # at-least-once: the same 2 events again
    currents.put("users.messages.email.Send", H[2], send[2:])  # and one of them in another hour
    result = currents.tick()
    assert sorted(r.partition_key for r in result.run_requests) == sorted([H[1], H[2]])
    assert {r.tags["amp_braze/currents_files"] for r in result.run_requests} == {"4", "1"}
    meta = currents.load(H[1])
    assert (meta["files"], meta["events"], meta["duplicates_dropped"], meta["event_types"]) == (
        4,
        9,
        2,
        3,
    )
    assert meta["files_read_by_polars"] == 4 and meta["_check_passed"]
    currents.load(H[2])
    send_table = currents.storage.read_parquet(
        current_hour(currents.storage, H[1]).type_files()["users.messages.email.Send"]
    )
    assert sorted(send_table["id"].to_list()) == sorted(r["id"] for r in send)
    assert "email_address" in send_table.columns and "campaign_id" in send_table.columns  # lossless
    summary = currents.summary(NOW + dt.timedelta(hours=1))
    row = summary.row(0, named=True)
    assert (
        row["external_user_id"],
        row["email_sends_30d"],
        row["email_opens_30d"],
        row["purchases_90d"],
    ) == ("u1", 3, 2, 4)
    assert currents.tick().run_requests == []  # nothing new


def test_late_and_out_of_order_files_are_found_and_hours_reload_whole(currents):
    currents.put("users.messages.email.Send", H[3], currents.events("users.messages.email.Send", 5))
    assert [r.partition_key for r in currents.tick().run_requests] == [H[3]]
    assert currents.load(H[3])["events"] == 5
    # A late file for the loaded hour, in an event type folder that sorts *before* the one seen.
    currents.put(
        "users.behaviors.CustomEvent", H[3], currents.events("users.behaviors.CustomEvent", 2)
    )
    result = currents.tick()
    assert [r.partition_key for r in result.run_requests] == [H[3]]
    assert result.run_requests[0].tags["amp_braze/late_files"] == "true"
    meta = currents.load(H[3])
    assert meta["events"] == 7 and meta["files"] == 2  # reloaded whole: nothing counted twice
    long = currents.storage.read_parquet(current_hour(currents.storage, H[3]).events)
    assert long.height == 7 and long["id"].n_unique() == 7


@pytest.mark.slow
def test_2500_new_files_in_one_tick(currents):
    body = fixtures.avro_bytes(
        "users.messages.email.Send", currents.events("users.messages.email.Send", 1)
    )
    from concurrent.futures import ThreadPoolExecutor

    types = ["users.messages.email.Send", "users.messages.email.Open", "users.behaviors.Purchase"]
    keys = [fixtures.key_for(currents.prefix, types[i % 3], H[i % 4], i) for i in range(2500)]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda k: currents.s3.put_object(Bucket=currents.bucket, Key=k, Body=body), keys
            )
        )
    result = currents.tick()
    assert sum(int(r.tags["amp_braze/currents_files"]) for r in result.run_requests) == 2500
    assert sorted(r.partition_key for r in result.run_requests) == sorted(H[:4])
    assert currents.tick().run_requests == []


def test_corrupt_truncated_and_non_avro_files_are_quarantined(currents):
    good = fixtures.avro_bytes(
        "users.messages.email.Open", currents.events("users.messages.email.Open", 50)
    )
    currents.put("users.messages.email.Open", H[1], [], data=good)
    bad1 = currents.put("users.messages.email.Open", H[1], [], data=good[: len(good) // 2])
    bad2 = currents.put(
        "users.messages.email.Send", H[1], [], data=b"PK\x03\x04 this is a zip, not avro"
    )
    bad3 = currents.put("users.messages.email.Click", H[1], [], data=b"Obj\x01" + bytes(40))
    currents.tick()
    meta = currents.load(H[1])
    assert meta["events"] == 50 and meta["quarantined_files"] == 3 and not meta["_check_passed"]
    from amp_braze.currents.assets import quarantined

    q = {x["key"]: x["reason"] for x in quarantined(currents.storage, H[1])}
    assert set(q) == {bad1, bad2, bad3}
    assert q[bad2].startswith("not an Avro container file")


def test_cursor_stays_small_over_many_ticks():
    cursor = None
    sizes = []
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for tick in range(24 * 10):  # ten days of hourly ticks, 10 files an hour
        now = start + dt.timedelta(hours=tick)
        since = hour_of(now - dt.timedelta(hours=48))
        files = [
            CurrentsFile(f"k/{hour_of(now - dt.timedelta(hours=h))}/{i}.avro", "t", hour_of(now - dt.timedelta(hours=h)), 10, "e")
            for h in range(48) for i in range(10)
        ]  # fmt: skip
        changes, cursor = advance(files, cursor, since)
        assert len(changes) == (48 if tick == 0 else 1)  # only the new hour is new
        sizes.append(len(cursor))
    assert max(sizes) < 49 * 50 + 50
    assert sizes[-1] == sizes[100]


def test_fastavro_reads_what_polars_cannot():
    import io

    import fastavro

    schema = {"type": "record", "name": "Custom", "namespace": "dataexport.S3.inner.users.behaviors",
              "fields": [{"name": "id", "type": "string"}, {"name": "v", "type": ["null", "string", "long"]},
                         {"name": "m", "type": {"type": "map", "values": "string"}}]}  # fmt: skip
    buf = io.BytesIO()
    fastavro.writer(
        buf,
        fastavro.parse_schema(schema),
        [{"id": "a", "v": 5, "m": {"k": "x"}}, {"id": "b", "v": "s", "m": {}}],
    )
    df, event_type, reader = read_avro(buf.getvalue())
    assert (reader, event_type) == ("fastavro", "users.behaviors.Custom")
    assert df["id"].to_list() == ["a", "b"] and df["v"].to_list() == ["5", "s"]
    deflated = fixtures.avro_bytes(
        "users.messages.email.Send",
        [
            fixtures.event(
                "users.messages.email.Send",
                "u",
                dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                random.Random(1),
            )
        ],
        codec="deflate",
    )
    df, event_type, reader = read_avro(deflated)
    assert (reader, event_type, df["email_address"][0]) == (
        "polars",
        "users.messages.email.Send",
        "u@example.com",
    )


def test_engagement_summary_exact_counts(currents):
    as_of = dt.datetime(2026, 6, 30, 12, tzinfo=dt.UTC)
    day = dt.timedelta(days=1)
    E = "users.messages.email."
    plan = [  # (event type, user, days before as_of)
        (E + "Send", "ann", 1), (E + "Send", "ann", 20), (E + "Send", "ann", 45), (E + "Send", "ann", 120),
        (E + "Delivery", "ann", 1), (E + "Open", "ann", 2), (E + "Open", "ann", 40), (E + "Click", "ann", 2),
        (E + "Bounce", "bob", 3), (E + "SoftBounce", "bob", 50), (E + "Unsubscribe", "bob", 60),
        ("users.messages.pushnotification.Open", "bob", 5), ("users.behaviors.Purchase", "bob", 10),
        ("users.behaviors.Purchase", "bob", 100), ("users.behaviors.app.SessionStart", "bob", 1),
        (E + "Open", "ann", -1),  # after as_of: not counted
    ]  # fmt: skip
    fixtures.FIELDS.setdefault(E + "SoftBounce", fixtures.FIELDS[E + "Bounce"])
    hour = hour_of(NOW - dt.timedelta(hours=1))
    for et, user, days in plan:
        at = as_of - days * day
        rec = fixtures.event(et, user, at, currents.rng)
        if et == "users.behaviors.Purchase":
            rec["price"] = 10.0 if days == 10 else 99.0
        currents.put(et, hour, [rec])
    anon = fixtures.event(E + "Open", "x", as_of - day, currents.rng)
    anon["external_user_id"] = None
    anon["user_id"] = "braze-anon"
    currents.put(E + "Open", hour, [anon])
    currents.tick()
    currents.load(hour)
    s = {
        r["external_user_id"] or r["user_id"]: r
        for r in currents.summary(as_of).iter_rows(named=True)
    }
    ann, bob, anon_row = s["ann"], s["bob"], s["braze-anon"]
    assert (ann["email_sends_30d"], ann["email_sends_90d"]) == (2, 3)
    assert (
        ann["email_deliveries_30d"],
        ann["email_opens_30d"],
        ann["email_opens_90d"],
        ann["email_clicks_30d"],
    ) == (1, 1, 2, 1)
    assert (
        ann["last_email_open_at"] == as_of - 2 * day
        and ann["last_email_click_at"] == as_of - 2 * day
    )
    assert (
        bob["email_bounces_30d"],
        bob["email_bounces_90d"],
        bob["email_unsubscribes_30d"],
        bob["email_unsubscribes_90d"],
    ) == (1, 2, 0, 1)
    assert (bob["push_opens_30d"], bob["purchases_90d"], bob["revenue_90d"]) == (1, 1, 10.0)
    assert bob["last_purchase_at"] == as_of - 10 * day and bob["last_session_at"] == as_of - day
    assert anon_row["external_user_id"] is None and anon_row["email_opens_30d"] == 1


@pytest.mark.slow
def test_engagement_summary_updates_a_rollup_and_equals_a_full_recompute(currents):
    """History is not reread: the all-time fields live in a roll-up that new and reloaded hours are
    folded into, and the windowed counts read only recent hours. Each summary must equal the one
    computed from every event at once (summarize), in every situation the roll-up meets."""
    E = "users.messages.email."
    t0 = dt.datetime(2026, 9, 1, 12, tzinfo=dt.UTC)
    day, hour = dt.timedelta(days=1), dt.timedelta(hours=1)
    types = [E + "Send", E + "Open", E + "Click", "users.behaviors.Purchase",
             "users.behaviors.app.SessionStart"]  # fmt: skip
    rng = random.Random(9)

    def put_hour(q: dt.datetime, n: int, ahead: dt.timedelta = dt.timedelta(0)) -> tuple[str, list]:
        """n events queued in hour q (timed within it, or ``ahead`` of it), one file per type."""
        h, recs = hour_of(q), []
        for et in types:
            batch = [
                fixtures.event(
                    et, rng.choice(["ann", "bob", "cy"]), q + rng.random() * hour + ahead, rng
                )
                for _ in range(n)
            ]
            currents.put(et, h, batch)
            recs += batch
        return h, recs

    def check(as_of: dt.datetime, rollup: str, folded: int) -> dict:
        got, meta = currents.summary_and_metadata(as_of)
        every = currents.storage.scan_parquet(
            [h.events for h in current_hours(currents.storage).values()]
        )
        assert got.equals(summarize(every, as_of)), (rollup, as_of)
        assert (meta["rollup"], meta["hours_folded_into_rollup"]) == (rollup, folded)
        return meta

    hours = [put_hour(t0 - d * day, 20)[0] for d in (200, 120, 60, 3)]
    old_purchase = fixtures.event("users.behaviors.Purchase", "dee", t0 - 200 * day, rng)
    currents.put("users.behaviors.Purchase", hours[0], [old_purchase])  # dee: only ancient history
    dup = fixtures.event(E + "Open", "ann", t0 - 3 * day, rng)
    currents.put(E + "Open", hours[3], [dup])
    currents.put(E + "Open", hours[2], [dup])  # delivered twice, in two hours: counts once
    for h in hours:
        currents.load_any_hour(h)
    meta = check(t0, "rebuilt", 4)
    assert (
        meta["hours_loaded"] == 4 and meta["hours_read_for_windows"] == 2
    )  # not 200 or 120 days back
    assert currents.summary(t0).filter(pl.col("external_user_id") == "dee")[
        "last_purchase_at"
    ].item() == (dt.datetime.fromtimestamp(old_purchase["time"], dt.UTC))

    # A new hour, one of whose events carries a time a day ahead (a device clock running fast).
    h_new, _ = put_hour(t0 + 2 * hour, 10)
    currents.put(E + "Click", h_new, [fixtures.event(E + "Click", "cy", t0 + day, rng)])
    currents.load_any_hour(h_new)
    check(t0 + 3 * hour, "incremental", 1)
    check(t0 + 4 * hour, "incremental", 1)  # that hour is folded again until its events are past
    check(t0 + 2 * day, "incremental", 1)  # now they are: the click counts, the hour is settled
    check(t0 + 2 * day + hour, "unchanged", 0)
    check(t0, "bypassed", 0)  # an earlier as_of reads everything and leaves the roll-up alone
    # A late file reloads an hour; a vanished hour rebuilds the roll-up.
    currents.put(E + "Open", hours[2], [fixtures.event(E + "Open", "bob", t0 - 59 * day, rng)])
    currents.load_any_hour(hours[2])
    check(t0 + 2 * day + hour, "incremental", 1)
    currents.storage.delete_prefix(f"currents/events/hour={hours[1]}")
    check(t0 + 2 * day + hour, "rebuilt", 4)


@pytest.mark.skipif(
    not SHARED_SAMPLES.exists() and not os.environ.get("CI"),
    reason="Braze's sample files are not beside the project (in CI they must be: it fails there)",
)
def test_every_braze_sample_file_loads(currents):
    avro_dir = SHARED_SAMPLES / "sample-data" / "Avro"
    files = sorted(avro_dir.glob("*.avro"))
    assert len(files) == 94
    for f in files:
        currents.put(f.stem, H[1], [], data=f.read_bytes())
    legacy = SHARED_SAMPLES / "s3-sample-data" / "Push_Notification_Send"
    legacy_key = f"{currents.prefix}/legacy/{legacy.name}/dataexport.S3.integration.599f118afbe76a01c513c63c+2+0000035465.avro"
    currents.put("", "", [], key=legacy_key, data=next(legacy.glob("*.avro")).read_bytes())
    result = currents.tick()
    legacy_hour = hour_of(dt.datetime.now(dt.UTC))  # no date= in its key: LastModified decides
    assert H[1] in {r.partition_key for r in result.run_requests}
    meta = currents.load(H[1])
    assert meta["files"] == 94 and meta["events"] == 94 and meta["quarantined_files"] == 0
    for f in files:
        sample = json.loads(
            (SHARED_SAMPLES / "sample-data" / "JSON" / f"{f.stem}.json").read_text()
        )
        table = currents.storage.read_parquet(
            current_hour(currents.storage, H[1]).type_files()[f.stem]
        )
        assert table.height == 1, f.stem
        assert table["id"][0] == _plain(sample["id"]), f.stem
        if "user_id" in sample:
            assert table["user_id"][0] == _plain(sample["user_id"]), f.stem
    meta = currents.load(legacy_hour)
    assert meta["events"] == 12 and meta["event_types"] == 1
    table = currents.storage.read_parquet(
        current_hour(currents.storage, legacy_hour).type_files()[
            "users.messages.pushnotification.Send"
        ]
    )
    assert table.height == 12 and table.columns[:2] == ["id", "user_id"]


def _plain(value):
    """Avro JSON wraps union values: {"string": "x"} -> "x"."""
    return next(iter(value.values())) if isinstance(value, dict) and len(value) == 1 else value


def test_sync_job_refreshes_engagement_but_not_hourly_loads(currents, tmp_path):
    job = currents.defs.resolve_job_def("braze_sync_job")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    # This profile SQL does not read engagement_summary, so the sync does not need it.
    assert "engagement_summary" not in keys and "braze_currents_events" not in keys
    (tmp_path / "profile.sql").write_text(
        "SELECT p.customer_id AS external_id, e.email_opens_30d FROM customer_profiles p "
        "LEFT JOIN engagement_summary e ON e.external_user_id = p.customer_id"
    )
    job = build_defs(load_config(tmp_path / "amp_braze.yaml")).resolve_job_def("braze_sync_job")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert "engagement_summary" in keys and "braze_currents_events" not in keys
    assert currents.defs.resolve_sensor_def("braze_currents_sensor").minimum_interval_seconds == 60


def test_revenue_is_the_same_whatever_order_the_events_come_in():
    """A float summed in another order can move in its last bit, and the sync would then resend it
    to Braze every run; revenue is summed in whole millionths, which any order sums the same."""
    rng = random.Random(3)
    as_of = dt.datetime(2026, 6, 30, tzinfo=dt.UTC)
    n = 5_000
    events = pl.DataFrame(
        {
            "id": [str(i) for i in range(n)],
            "event_type": ["users.behaviors.Purchase"] * n,
            "external_user_id": [f"u{i % 3}" for i in range(n)],
            "user_id": [f"b{i % 3}" for i in range(n)],
            "time": [as_of - dt.timedelta(minutes=i) for i in range(n)],
            "price": [rng.random() * 1000 for _ in range(n)],
        }
    )
    results = [
        summarize(events.sample(fraction=1, shuffle=True, seed=s).lazy(), as_of) for s in range(5)
    ]
    assert all(r.equals(results[0]) for r in results)
    by_user = events.group_by("external_user_id").agg((pl.col("price") * 1e6).round().sum())
    expected = {u: v / 1e6 for u, v in by_user.iter_rows()}
    assert {
        r["external_user_id"]: r["revenue_90d"] for r in results[0].iter_rows(named=True)
    } == expected
