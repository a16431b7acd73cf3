"""Segments: every rule op, nested rules, exclusions, SQL segments, joiners/leavers, the size guard."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from amp_braze.audiences.memberships import (
    compute_memberships,
    membership_changes,
    segment_attributes,
    size_guard,
)
from amp_braze.audiences.segment_rules import compile_rule
from amp_braze.config import BrazeConfig, ConfigError, parse_config

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
USERS = pl.DataFrame(
    {
        "__id": ["a", "b", "c", "d", "e"],
        "external_id": ["a", "b", "c", "d", "e"],
        "tier": ["gold", "silver", None, "platinum", "gold"],
        "ltv": [1500.0, 200.0, 50.0, None, 999.99],
        "orders": [12, 2, 0, 5, None],
        "opted": [True, False, None, True, True],
        "email": ["ann@shop.com", "bob@mail.org", None, "dee@shop.com", "eve@x.io"],
        "tags": [["vip", "web"], ["web"], [], None, ["store"]],
        "last_purchase": [
            dt.date(2026, 11, 20),
            dt.date(2026, 1, 1),
            None,
            dt.date(2026, 8, 31),
            dt.date(2026, 12, 5),
        ],
        "last_seen": [
            NOW - dt.timedelta(hours=5),
            NOW - dt.timedelta(days=40),
            None,
            NOW - dt.timedelta(days=29, hours=23),
            NOW,
        ],
    }
)


def members(rule: dict) -> list[str]:
    expr = compile_rule(rule, USERS.schema, "segments.s.rules", NOW)
    return USERS.filter(expr)["__id"].to_list()


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"attribute": "tier", "op": "=", "value": "gold"}, ["a", "e"]),
        (
            {"attribute": "tier", "op": "!=", "value": "gold"},
            ["b", "c", "d"],
        ),  # missing counts as "not gold"
        ({"attribute": "ltv", "op": ">", "value": 999.99}, ["a"]),
        ({"attribute": "ltv", "op": ">=", "value": 999.99}, ["a", "e"]),
        ({"attribute": "orders", "op": "<", "value": 2}, ["c"]),
        ({"attribute": "orders", "op": "<=", "value": 2}, ["b", "c"]),
        ({"attribute": "tier", "op": "in", "value": ["gold", "platinum"]}, ["a", "d", "e"]),
        ({"attribute": "tier", "op": "not_in", "value": ["gold", "platinum"]}, ["b", "c"]),
        ({"attribute": "email", "op": "contains", "value": "@shop."}, ["a", "d"]),
        ({"attribute": "tags", "op": "contains", "value": "web"}, ["a", "b"]),
        ({"attribute": "email", "op": "starts_with", "value": "bob"}, ["b"]),
        ({"attribute": "tier", "op": "is_null"}, ["c"]),
        ({"attribute": "orders", "op": "not_null"}, ["a", "b", "c", "d"]),
        ({"attribute": "ltv", "op": "between", "value": [200, 1000]}, ["b", "e"]),
        (
            {"attribute": "last_purchase", "op": "between", "value": ["2026-01-01", "2026-08-31"]},
            ["b", "d"],
        ),
        (
            {"attribute": "last_purchase", "op": "within_last_days", "value": 90},
            ["a", "d"],
        ),  # future date excluded
        ({"attribute": "last_seen", "op": "within_last_days", "value": 30}, ["a", "d", "e"]),
        ({"attribute": "opted", "op": "=", "value": True}, ["a", "d", "e"]),
        ({"attribute": "last_purchase", "op": ">", "value": "2026-11-01"}, ["a", "e"]),
    ],
)
def test_every_op(rule, expected):
    assert members(rule) == expected


def test_nested_all_any_not():
    rule = {
        "all": [
            {
                "any": [
                    {"attribute": "tier", "op": "=", "value": "gold"},
                    {"attribute": "orders", "op": ">=", "value": 5},
                ]
            },
            {"not": {"attribute": "opted", "op": "=", "value": False}},
            {
                "not": {
                    "all": [
                        {"attribute": "ltv", "op": "<", "value": 1000},
                        {"attribute": "tier", "op": "=", "value": "gold"},
                    ]
                }
            },
        ]
    }
    # gold or >=5 orders: a, d, e; not opted=false: drops nobody of those; not(ltv<1000 and gold): drops e.
    assert members(rule) == ["a", "d"]


@pytest.mark.parametrize(
    ("rule", "key", "words"),
    [
        (
            {"attribute": "tire", "op": "=", "value": "gold"},
            "segments.s.rules.attribute",
            "unknown attribute 'tire'",
        ),
        (
            {"all": [{"attribute": "ltv", "op": ">", "value": "lots"}]},
            "segments.s.rules.all[0].value",
            "is not a number",
        ),
        (
            {"attribute": "tier", "op": "within_last_days", "value": 3},
            "segments.s.rules.op",
            "needs a date or time attribute",
        ),
        (
            {"attribute": "ltv", "op": "starts_with", "value": "1"},
            "segments.s.rules.op",
            "needs a text attribute",
        ),
        (
            {"attribute": "last_purchase", "op": "=", "value": "yesterday"},
            "segments.s.rules.value",
            "is not a date",
        ),
    ],
)
def test_rule_type_errors_name_the_key(rule, key, words):
    with pytest.raises(ConfigError) as info:
        compile_rule(rule, USERS.schema, "segments.s.rules", NOW)
    assert info.value.key == key and words in str(info.value)


def _config(tmp_path, segments: str):
    (tmp_path / "p.sql").write_text("SELECT 1")
    import yaml

    data = {
        "sources": {"pos": {"path": "x.csv", "customer_key": "id"}},
        "profile_sql": "p.sql",
        "braze": {"rest_endpoint": "http://127.0.0.1:1"},
        "segments": yaml.safe_load(segments),
    }
    return parse_config(data, tmp_path)


def test_exclusions_sql_segments_and_segment_attributes(tmp_path):
    cfg = _config(
        tmp_path,
        """
        big: {sql: "SELECT external_id FROM braze_customer_attributes WHERE ltv > 500"}
        gold: {rules: {attribute: tier, op: in, value: [gold, platinum]}, exclude: [big]}
        engaged: {rules: {attribute: opted, op: "=", value: true}, exclude: [gold]}
        """,
    )
    m = compute_memberships(cfg, USERS, {}, NOW)
    assert m.columns == ["external_id", "__id", "big", "gold", "engaged"]
    assert m.filter("big")["__id"].to_list() == ["a", "e"]
    assert m.filter("gold")["__id"].to_list() == ["d"]  # a and e are big
    assert m.filter("engaged")["__id"].to_list() == [
        "a",
        "e",
    ]  # d is gold (after gold's own exclusion)
    as_bool = segment_attributes(m, cfg.braze, list(cfg.segments))
    assert as_bool.columns == ["__id", "amp_big", "amp_gold", "amp_engaged"]
    assert as_bool.row(0) == ("a", True, False, True)
    arr = segment_attributes(
        m, BrazeConfig(instance="US-03", segment_attributes="array"), list(cfg.segments)
    )
    assert arr.columns == ["__id", "amp_segments"]
    assert arr["amp_segments"].to_list() == [
        ["big", "engaged"],
        [],
        [],
        ["gold"],
        ["big", "engaged"],
    ]


def test_sql_segment_must_return_the_identifier(tmp_path):
    cfg = _config(tmp_path, 'x: {sql: "SELECT tier FROM braze_customer_attributes"}')
    with pytest.raises(ConfigError, match="must return the identifier column 'external_id'"):
        compute_memberships(cfg, USERS, {}, NOW)


def test_joiners_leavers_and_size_guard(tmp_path):
    cfg = _config(
        tmp_path,
        """
        s1: {sql: "SELECT 1 AS external_id"}
        s2: {sql: "SELECT 1 AS external_id", max_change: 0.2}
        s3: {sql: "SELECT 1 AS external_id", allow_large_change: true}
        """,
    )
    before = pl.DataFrame(
        {"__id": ["a", "b", "c"], "s1": [True, True, False], "s2": [True, False, False]}
    )
    now = pl.DataFrame(
        {
            "__id": ["a", "c", "d"],
            "s1": [False, True, True],
            "s2": [True, False, True],
            "s3": [True, True, True],
        }
    )
    ch = membership_changes(now, before, ["s1", "s2", "s3"])
    assert ch.sizes == {"s1": 2, "s2": 2, "s3": 3}
    assert ch.joiners == {"s1": 2, "s2": 1, "s3": 3}  # c and d join s1; d joins s2; s3 is new
    assert ch.leavers == {"s1": 2, "s2": 0, "s3": 0}  # a leaves s1, b disappears
    result = size_guard(cfg, {"s1": 2, "s2": 13, "s3": 100}, {"s1": 2, "s2": 10, "s3": 1})
    assert not result.passed
    assert (
        len(result.problems) == 1
        and "segment 's2' changed from 10 to 13 members (30% > max_change 20%)"
        in result.problems[0]
    )
    assert size_guard(cfg, {"s2": 13}, {"s2": 10}, accept_all=True).passed
    assert size_guard(cfg, {"s1": 500}, {}).passed  # no baseline yet
