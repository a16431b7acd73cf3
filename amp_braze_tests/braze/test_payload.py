"""Payload encoding: a plan's rows to /users/track JSON bodies, within Braze's limits."""

from __future__ import annotations

import datetime as dt

import orjson
import polars as pl
import pytest

from amp_braze.braze.payload import comparable_types, data_points, object_json, requests
from amp_braze.braze.plan_columns import ADD, NEW, REMOVE, AttrSpec, flag


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


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (pl.Int64, pl.Float64, True),  # numbers of any width
        (pl.Int8, pl.Decimal(10, 2), True),
        (pl.Datetime("us", "UTC"), pl.Datetime("ms"), True),  # written alike: ISO 8601 UTC
        (pl.Date, pl.Date, True),
        (pl.Null, pl.String, True),  # null goes with anything
        (pl.Date, pl.Null, True),
        (pl.List(pl.String), pl.List(pl.String), True),
        (pl.Date, pl.Datetime("us", "UTC"), False),  # YYYY-MM-DD against a time: new values
        (pl.Date, pl.Time, False),
        (pl.Datetime("us"), pl.Duration("us"), False),
        (pl.String, pl.Int64, False),
        (pl.Boolean, pl.Int64, False),
        (pl.String, pl.Categorical, False),
        (pl.List(pl.String), pl.List(pl.Int64), False),
    ],
)
def test_comparable_types_as_braze_sees_the_values(a, b, same):
    """One rule for the planner and the sync state: a Date and a Datetime are different values
    to Braze (the wire writes one as YYYY-MM-DD, the other as an ISO 8601 time)."""
    assert comparable_types(a, b) is same
    assert comparable_types(b, a) is same
