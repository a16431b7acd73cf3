"""Currents loads and summaries that overlap, fail or meet odd events: an hour is always exactly
one load's files, failed loads are retried and asked for again, events without an id are kept."""

from __future__ import annotations

import datetime as dt
import io
import threading
from pathlib import Path

import dagster as dg
import fastavro
import polars as pl
import pytest

from amp_braze.currents.hours import DONE, current_hour, current_hours, hour_dir, load_dir
from amp_braze.currents.keys import CurrentsFile
from amp_braze.currents.load import load_hour
from amp_braze.currents.summary import summarize
from amp_braze.demo.run import QUIET
from amp_braze_tests.support.assets import assets_named
from amp_braze_tests.support.currents import NOW, Currents, H

TYPES = [
    "users.messages.email.Send",
    "users.messages.email.Delivery",
    "users.messages.email.Open",
    "users.messages.email.Click",
    "users.behaviors.Purchase",
]


def _consistent(currents: Currents, hour: str) -> tuple[int, set[str]]:
    """The hour's tables agree: the long table holds exactly the per-type tables' events."""
    cur = current_hour(currents.storage, hour)
    assert cur is not None
    assert all(n.startswith(cur.folder + "/") for n in cur.names)  # one load's files only
    long = currents.storage.read_parquet(cur.events)
    by_type = {
        t: currents.storage.read_parquet(n)["id"].to_list() for t, n in cur.type_files().items()
    }
    assert sorted(long["id"].to_list()) == sorted(i for ids in by_type.values() for i in ids)
    assert set(long["event_type"].unique()) == set(by_type)
    return long.height, set(by_type)


@pytest.mark.slow
def test_two_loads_of_one_hour_at_once_leave_one_loads_files(currents):
    """Each round: a load starts, files of other event types arrive, a second load starts."""
    for round_ in range(4):
        for t in TYPES[:2]:
            currents.put(t, H[1], currents.events(t, 3))
        currents.tick()
        threads = [threading.Thread(target=currents.load_isolated, args=(H[1],))]
        threads[0].start()
        for t in TYPES[2:] if round_ % 2 == 0 else TYPES[:1]:
            currents.put(t, H[1], currents.events(t, 2))
        threads.append(threading.Thread(target=currents.load_isolated, args=(H[1],)))
        threads[1].start()
        for th in threads:
            th.join(120)
        assert not any(th.is_alive() for th in threads)
        _consistent(currents, H[1])
    # Only the newest two complete loads stay (one for a reader still using it).
    folders = {n.split("/")[3] for n in currents.storage.list(hour_dir(H[1]))}
    assert len(folders) <= 2, folders


def test_a_load_killed_midway_is_never_read(currents):
    currents.put(TYPES[0], H[1], currents.events(TYPES[0], 4))
    currents.tick()
    currents.load(H[1])
    before = current_hour(currents.storage, H[1])
    # What a load killed after writing some files leaves: a folder without its completion mark.
    half = load_dir(H[1], "29990101T000000-killed")
    currents.storage.write_parquet(f"{half}/_events.parquet", pl.DataFrame({"id": ["x"]}))
    assert current_hour(currents.storage, H[1]) == before
    assert not currents.storage.exists(f"{half}/{DONE}")
    assert _consistent(currents, H[1])[0] == 4


def test_two_summaries_at_once_leave_a_rollup_that_matches_its_manifest(currents):
    for k, t in enumerate(TYPES):
        currents.put(t, H[1 + k % 3], currents.events(t, 5, user=f"u{k}"))
    currents.tick()
    for h in H[1:4]:
        currents.load(h)
    as_of = NOW + dt.timedelta(hours=1)
    threads = [
        threading.Thread(target=currents.summary_isolated, args=(as_of + dt.timedelta(minutes=m),))
        for m in (0, 1, 2)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    man = currents.storage.read_json("currents/rollup/manifest.json")
    assert currents.storage.exists(man["file"])
    # A later summary built on whatever roll-up won equals a full recompute.
    later = as_of + dt.timedelta(minutes=5)
    got = currents.summary(later)
    every = currents.storage.scan_parquet(
        [h.events for h in current_hours(currents.storage).values()]
    )
    assert got.equals(summarize(every, later))


@pytest.mark.slow
def test_a_failed_load_is_retried_by_dagster(currents, tmp_path):
    currents.put(TYPES[0], H[1], currents.events(TYPES[0], 3))
    currents.tick()
    blocker = Path(currents.storage.uri(hour_dir(H[1])))
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")  # the load cannot write: it fails
    timer = threading.Timer(2.0, blocker.unlink)  # ... until this is gone
    timer.start()
    result = dg.materialize(
        assets_named(currents.defs, "braze_currents_events"),
        instance=currents.instance, partition_key=H[1], resources=currents.defs.resources,
        run_config=QUIET, raise_on_error=False,
    )  # fmt: skip
    timer.join()
    assert result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" in kinds and "STEP_RESTARTED" in kinds
    assert _consistent(currents, H[1])[0] == 3


@pytest.mark.slow
def test_an_hour_whose_load_failed_is_requested_again(currents):
    currents.put(TYPES[0], H[1], currents.events(TYPES[0], 3))
    first = currents.tick()
    assert [r.partition_key for r in first.run_requests] == [H[1]]
    blocker = Path(currents.storage.uri(hour_dir(H[1])))
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    failed = currents.load_without_retries(H[1])
    assert not failed.success
    again = currents.tick()  # no file changed, but the load failed: asked for again
    assert [(r.partition_key, r.run_key.rsplit(":", 1)[1]) for r in again.run_requests] == [
        (H[1], "retry-1")
    ]
    blocker.unlink()
    assert currents.load_without_retries(H[1]).success
    assert currents.tick().run_requests == []  # loaded now: nothing more
    assert _consistent(currents, H[1])[0] == 3


def _avro(records: list[dict]) -> bytes:
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "users.behaviors.CustomEvent",
            "namespace": "com.appboy.currents",
            "fields": [
                {"name": "id", "type": ["null", "string"], "default": None},
                {"name": "user_id", "type": "string"},
                {"name": "time", "type": "int"},
                {"name": "name", "type": ["null", "string"], "default": None},
            ],
        }
    )
    buf = io.BytesIO()
    fastavro.writer(buf, schema, records)
    return buf.getvalue()


def test_events_without_an_id_are_each_kept():
    t = int(NOW.timestamp())
    records = [
        {"id": None, "user_id": "a", "time": t, "name": "x"},
        {"id": None, "user_id": "b", "time": t, "name": "y"},
        {"id": None, "user_id": "c", "time": t, "name": "z"},
        {"id": "e1", "user_id": "a", "time": t, "name": "x"},
        {"id": "e1", "user_id": "a", "time": t, "name": "x"},  # delivered twice: counted once
    ]
    data = _avro(records)
    f = CurrentsFile("k.avro", "users.behaviors.CustomEvent", H[1], 1, "e")
    load = load_hour([f], lambda key: data)
    assert load.events.height == 4 and load.duplicates == 1
    assert sorted(load.events["user_id"].to_list()) == ["a", "a", "b", "c"]
