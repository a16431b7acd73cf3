"""The plain functions under the sync: payload encoding, the client's rules, state folding."""

from __future__ import annotations

import datetime as dt
import time

import orjson
import polars as pl
import pytest
import urllib3

from amp_braze.braze.client import AuthError, BrazeClient, BrazeError
from amp_braze.braze.instances import INSTANCES, endpoint_for
from amp_braze.braze.payload import data_points, object_json, requests
from amp_braze.braze.retry import Pacer, retry_after_seconds
from amp_braze.plan_format import ADD, NEW, REMOVE, AttrSpec, flag
from amp_braze.storage import Storage
from amp_braze.sync.state import CHECKPOINT, Entry, SyncState, fold_journal


def test_object_json_sends_only_flagged_attributes_in_braze_formats():
    plan = pl.DataFrame(
        {
            "external_id": ["a", "b"],
            "__id": ["a", "b"],
            NEW: [True, False],
            "dob": [dt.date(1980, 12, 21), None],
            flag("dob"): [True, True],
            "seen": [dt.datetime(2026, 1, 2, 3, 4, 5, 678000), dt.datetime(2026, 1, 1)],
            flag("seen"): [True, False],
            "note": ['say "hi"', "x"],
            flag("note"): [True, False],
            "segs": [["vip"], ["gold", "vip"]],
            flag("segs"): [True, True],
            "segs" + ADD: [["vip"], ["gold"]],
            "segs" + REMOVE: [[], ["lapsed"]],
        }
    )
    attrs = [AttrSpec("dob"), AttrSpec("seen"), AttrSpec("note"), AttrSpec("segs", array_ops=True)]
    objs = [orjson.loads(o) for o in object_json(plan, attrs, "external_id").to_list()]
    assert objs[0] == {
        "external_id": "a", "dob": "1980-12-21", "seen": "2026-01-02T03:04:05.678Z", "note": 'say "hi"', "segs": ["vip"],
    }  # fmt: skip
    assert objs[1] == {
        "external_id": "b",
        "dob": None,
        "segs": {"add": ["gold"], "remove": ["lapsed"]},
    }
    assert data_points(plan, attrs).to_list() == [4, 2]  # b: null dob 1, one added segment 1
    alias = pl.DataFrame(
        {
            "alias_name": ["ann@x.io"],
            "alias_label": ["email"],
            "__id": ["k"],
            "t": [1],
            flag("t"): [True],
        }
    )
    obj = orjson.loads(object_json(alias, [AttrSpec("t")], "user_alias")[0])
    assert obj == {
        "user_alias": {"alias_name": "ann@x.io", "alias_label": "email"},
        "_update_existing_only": False,
        "t": 1,
    }
    obj = orjson.loads(
        object_json(plan.head(1), [AttrSpec("note")], "external_id", update_existing_only=True)[0]
    )
    assert obj == {"external_id": "a", "_update_existing_only": True, "note": 'say "hi"'}


def test_requests_respect_object_and_byte_limits():
    objs = pl.Series(
        [orjson.dumps({"external_id": f"u{i}", "s": "x" * 200}).decode() for i in range(160)]
    )
    ids = pl.Series([f"u{i}" for i in range(160)])
    reqs = list(requests(objs, ids))
    assert [len(r.ids) for r in reqs] == [75, 75, 10]
    assert reqs[1].ids[0] == "u75"
    assert orjson.loads(reqs[2].body)["attributes"][-1]["external_id"] == "u159"
    small = list(requests(objs, ids, max_bytes=5000))
    assert all(len(r.body) <= 5000 for r in small)
    assert sum(len(r.ids) for r in small) == 160
    assert [i for r in small for i in r.ids] == ids.to_list()


def test_retry_after_headers():
    h = urllib3.HTTPHeaderDict
    assert retry_after_seconds(h({"X-Ratelimit-Retry-After": "7"})) == 7
    assert retry_after_seconds(h({"x-ratelimit-reset": "2"})) == 2
    assert retry_after_seconds(h({"X-RateLimit-Reset": "1800000010"}), now=1800000000) == 10
    assert retry_after_seconds(h({})) is None


def test_pacer_keeps_the_rate():
    pacer = Pacer(200)
    start = time.monotonic()
    for _ in range(100):
        pacer.acquire()
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 1.0  # 100 requests at 200/s take half a second


def test_endpoints_keys_and_instances():
    assert endpoint_for("eu-01", None) == "https://rest.fra-01.braze.eu"
    assert endpoint_for(None, "https://rest.iad-03.braze.com/") == "https://rest.iad-03.braze.com"
    assert len(INSTANCES) == 15 and INSTANCES["US-10"] == "https://rest.us-10.braze.com"
    with pytest.raises(BrazeError, match="plain http"):
        BrazeClient("http://rest.iad-01.braze.com", "k")
    with pytest.raises(AuthError, match="set BRAZE_API_KEY"):
        BrazeClient("http://127.0.0.1:1", "")
    client = BrazeClient("http://localhost:1", "secret-key-123")
    assert "secret" not in repr(client) and "secret" not in str(client.stats.as_dict())


def test_fold_takes_the_latest_flagged_value():
    state = pl.DataFrame({"__id": ["a", "b"], "tier": ["gold", "silver"], "ltv": [1.0, 2.0]})
    ck1 = pl.DataFrame(
        {
            "__id": ["a", "c"],
            "tier": ["bronze", "gold"],
            flag("tier"): [True, True],
            "ltv": [None, 5.0],
            flag("ltv"): [True, True],
        }
    )
    ck2 = pl.DataFrame(
        {
            "__id": ["a"],
            "tier": ["x"],
            flag("tier"): [False],
            "email": ["a@x.io"],
            flag("email"): [True],
        }
    )
    out = fold_journal(state, [Entry(1, CHECKPOINT, ck1), Entry(2, CHECKPOINT, ck2)])
    assert out.to_dicts() == [
        {"__id": "a", "tier": "bronze", "ltv": None, "email": "a@x.io"},
        {"__id": "b", "tier": "silver", "ltv": 2.0, "email": None},
        {"__id": "c", "tier": "gold", "ltv": 5.0, "email": None},
    ]


def test_state_versions_are_never_rewritten_and_racing_commits_both_land(tmp_path):
    storage = Storage(tmp_path)
    a, b = SyncState(storage, "dest"), SyncState(storage, "dest")
    a.write_checkpoint(pl.DataFrame({"__id": ["u1"], "t": [1], flag("t"): [True]}))
    assert a.commit().version == 1
    (first,) = (tmp_path / "sync/dest/state/v000001").glob("part-*.parquet")
    first_bytes = first.read_bytes()
    a.write_checkpoint(pl.DataFrame({"__id": ["u2"], "t": [2], flag("t"): [True]}))
    b.write_checkpoint(pl.DataFrame({"__id": ["u1"], "t": [3], flag("t"): [True]}))
    # b's manifest for v2 appears first (a racing commit); a must notice and land as v3.
    assert b.commit().version == 2
    assert a.commit().version == 2  # nothing pending any more: a sees b's version holds both
    view = a.current()
    assert view.pending == [] and dict(view.table.select("__id", "t").iter_rows()) == {
        "u1": 3,
        "u2": 2,
    }
    assert first.read_bytes() == first_bytes
    storage.write_bytes("sync/dest/state/v000003/part-00000.parquet", b"half-written, no manifest")
    assert a.current().version == 2  # a version without a manifest does not exist


def test_client_delivers_every_result_under_load(emulator):
    """Many small requests and few workers: results arrive while requests are still being queued."""
    import threading

    from amp_braze.braze.payload import Request

    emulator.faults(latency_ms=30)  # the request queue fills up and results come back meanwhile
    reqs = [
        Request([orjson.dumps({"external_id": f"u{i}", "n": i}).decode()], [f"u{i}"])
        for i in range(60)
    ]
    client = BrazeClient(emulator.url, emulator.key, rate_per_second=100_000, concurrency=2)
    seen: list[str] = []
    box: dict = {}

    def slow_requests():  # like encoding a chunk of the plan between requests
        for r in reqs:
            time.sleep(0.01)
            yield r

    worker = threading.Thread(
        target=lambda: box.setdefault(
            "stats", client.send(slow_requests(), lambda r: seen.extend(r.accepted))
        )
    )
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "send() did not return"
    assert sorted(seen) == sorted(f"u{i}" for i in range(60))
    assert box["stats"].accepted == 60 and box["stats"].requests == 60
