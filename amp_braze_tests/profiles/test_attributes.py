"""Braze field rules: every standard field and every dtype, good and bad values, exact outputs."""

from __future__ import annotations

import datetime as dt
import decimal

import polars as pl
import pytest

from amp_braze.config import BrazeConfig
from amp_braze.profiles.attributes import ProfileSqlError, build_attributes

CFG = BrazeConfig(instance="US-03")


def _one_column(name: str, values: list, dtype: pl.DataType | None = None, cfg: BrazeConfig = CFG):
    n = len(values)
    raw = pl.DataFrame(
        {"external_id": [f"u{i}" for i in range(n)], name: pl.Series(name, values, dtype=dtype)}
    )
    out = build_attributes(raw, cfg)
    accepted = dict(zip(out.table["external_id"].to_list(), out.table[name].to_list(), strict=True))
    rejected = dict(zip(out.rejections["identifier"], out.rejections["rule"], strict=True))
    return [accepted.get(f"u{i}", rejected.get(f"u{i}")) for i in range(n)], out


@pytest.mark.parametrize(
    ("field", "values", "expected"),
    [
        ("email", [" Ann@Example.COM ", "bob@x.io", "n/a", "a@b", "two@@x.com", None, "  "],
         ["ann@example.com", "bob@x.io", "email_format", "email_format", "email_format", None, None]),
        ("phone", ["(555) 123-4567", "555.123.4567", "+1 555 123 4567", "15551234567", "0044 20 7946 0000",
                   "+44 (0)20 7946 0000", "ext. 12", None],
         ["+15551234567", "+15551234567", "+15551234567", "+15551234567", "+442079460000",
          "+4402079460000", "ext. 12", None]),
        ("dob", ["1980-12-21", "12/21/1980", "1980/12/21", "21.12.1980", "1980-02-30", None],
         [dt.date(1980, 12, 21)] * 3 + ["dob_not_a_date", "dob_not_a_date", None]),
        ("gender", ["M", "female", " Other ", "n/a", "prefer not to say", "x", None],
         ["M", "F", "O", "N", "P", "gender_value", None]),
        ("country", ["US", "us", "Australia", "GBR", "United Kingdom", "Atlantis", None],
         ["US", "US", "AU", "GB", "GB", "country_iso_3166_alpha_2", None]),
        ("language", ["en", "FR", "pt-BR", "english", "xx", None],
         ["en", "fr", "pt", "language_iso_639_1", "language_iso_639_1", None]),
        ("time_zone", ["America/New_York", "Europe/Paris", "EST5EDT", "Mars/Base", "GMT+3x", None],
         ["America/New_York", "Europe/Paris", "EST5EDT", "time_zone_iana", "time_zone_iana", None]),
        ("email_subscribe", ["opted_in", "Subscribed", "unsubscribed", "yes", None],
         ["opted_in", "subscribed", "unsubscribed", "email_subscribe_value", None]),
        ("push_subscribe", ["opted_in", "maybe"], ["opted_in", "push_subscribe_value"]),
        ("first_name", ["  Ann ", "x" * 255, "y" * 256, ""], ["Ann", "x" * 255, "string_over_255_characters", None]),
        ("home_city", ["Boston"], ["Boston"]),
    ],
)  # fmt: skip
def test_standard_field_rules(field, values, expected):
    got, _ = _one_column(field, values)
    assert got == expected


def test_dob_from_date_and_datetime_types():
    got, _ = _one_column("dob", [dt.date(1990, 1, 2), dt.date(1700, 1, 1)])
    assert got == [dt.date(1990, 1, 2), "dob_not_a_date"]
    got, _ = _one_column("dob", [dt.datetime(1990, 1, 2, 23, 0)])
    assert got == [dt.date(1990, 1, 2)]


def test_subscription_from_boolean():
    got, _ = _one_column("email_subscribe", [True, False, None])
    assert got == ["opted_in", "unsubscribed", None]


@pytest.mark.parametrize(
    ("values", "dtype", "expected", "out_dtype"),
    [
        ([True, False, None], pl.Boolean, [True, False, None], pl.Boolean),
        ([1, -2, None], pl.Int32, [1, -2, None], pl.Int32),
        ([1.5, float("nan"), float("inf"), None], pl.Float64, [1.5, "not_a_finite_number", "not_a_finite_number", None], pl.Float64),
        ([decimal.Decimal("12.34")], pl.Decimal(10, 2), [12.34], pl.Float64),
        ([dt.date(2026, 1, 2)], pl.Date, [dt.date(2026, 1, 2)], pl.Date),
        ([dt.datetime(2026, 1, 2, 3, 4, 5)], pl.Datetime("us"), [dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)], pl.Datetime("us", "UTC")),
        (["x" * 255, "y" * 256], pl.String, ["x" * 255, "string_over_255_characters"], pl.String),
        ([["a", "b"], ["z" * 256], []], pl.List(pl.String), [["a", "b"], "array_element_over_255_characters", []], pl.List(pl.String)),
        ([[1, 2]], pl.List(pl.Int64), [[1, 2]], pl.List(pl.Int64)),
        ([{"title": "A", "pages": 3}], pl.Struct({"title": pl.String, "pages": pl.Int64}), [{"title": "A", "pages": 3}], pl.Struct({"title": pl.String, "pages": pl.Int64})),
    ],
)  # fmt: skip
def test_custom_attribute_types_from_dtype(values, dtype, expected, out_dtype):
    got, out = _one_column("attr", values, dtype)
    assert got == expected
    assert out.table.schema["attr"] == out_dtype


def test_datetime_with_zone_becomes_utc():
    ts = pl.Series([dt.datetime(2026, 1, 2, 12, 0)]).dt.replace_time_zone("America/New_York")
    raw = pl.DataFrame({"external_id": ["u"], "seen_at": ts})
    out = build_attributes(raw, CFG)
    assert out.table["seen_at"].to_list() == [dt.datetime(2026, 1, 2, 17, 0, tzinfo=dt.UTC)]


def test_unsupported_dtypes_are_config_errors():
    raw = pl.DataFrame({"external_id": ["u"], "took": [dt.timedelta(days=3)]})
    with pytest.raises(ProfileSqlError, match="'took' is a duration"):
        build_attributes(raw, CFG)
    raw = pl.DataFrame({"external_id": ["u"], "blob": [b"\x00"]})
    with pytest.raises(ProfileSqlError, match="'blob' has type Binary"):
        build_attributes(raw, CFG)


@pytest.mark.parametrize(
    ("column", "standard"),
    [("birthday", "dob"), ("birth_date", "dob"), ("date_of_birth", "dob"), ("email_address", "email"),
     ("phone_number", "phone"), ("firstname", "first_name"), ("lastName", "last_name"), ("First-Name", "first_name")],
)  # fmt: skip
def test_duplication_guard_names_the_standard_field(column, standard):
    raw = pl.DataFrame({"external_id": ["u"], column: ["x"]})
    with pytest.raises(ProfileSqlError) as info:
        build_attributes(raw, CFG)
    assert f"custom attribute {column!r} duplicates Braze's standard field {standard!r}" in str(
        info.value
    )
    out = build_attributes(raw, BrazeConfig(instance="US-03", shadowed_fields="warn"))
    assert out.custom_attributes == [column]
    assert len(out.warnings) == 1 and standard in out.warnings[0]


def test_identifier_rules_and_rejection_table():
    raw = pl.DataFrame(
        {
            "external_id": ["a", "b", "b", None, " ", "é" * 494, "c"],
            "email": ["a@x.io", "b@x.io", "b2@x.io", "n@x.io", "s@x.io", "l@x.io", "bad"],
            "tier": ["gold"] * 7,
            "_helper": [1, 2, 3, 4, 5, 6, 7],
        }
    )
    out = build_attributes(raw, CFG)
    assert out.table["external_id"].to_list() == ["a"]
    assert out.table.columns == ["external_id", "__id", "email", "tier", "_helper"]
    assert (out.input_rows, out.rejected_rows) == (7, 6)
    assert (
        out.custom_attributes == ["tier"]
        and out.helpers == ["_helper"]
        and out.standard_fields == ["email"]
    )
    rej = out.rejections.sort("rule", "value").select("column", "value", "rule").rows()
    assert rej == [
        ("email", "bad", "email_format"),
        ("identifier", "é" * 300, "external_id_over_987_bytes"),  # values are cut at 300 characters
        ("identifier", "b", "identifier_duplicate"),
        ("identifier", "b", "identifier_duplicate"),
        ("identifier", None, "identifier_missing"),
        ("identifier", " ", "identifier_missing"),
    ]


def test_renames_and_alias_identifier():
    raw = pl.DataFrame({"name": ["ann@x.io"], "label": ["email"], "Tier": ["gold"]})
    cfg = BrazeConfig(
        instance="US-03",
        identifier="user_alias",
        columns={"name": "alias_name", "label": "alias_label", "Tier": "tier"},
    )
    out = build_attributes(raw, cfg)
    assert out.table.rows() == [("ann@x.io", "email", "email\x1fann@x.io", "gold")]
    with pytest.raises(ProfileSqlError, match="braze.columns.nope"):
        build_attributes(raw, BrazeConfig(instance="US-03", columns={"nope": "x"}))
    with pytest.raises(ProfileSqlError, match="no 'external_id' column"):
        build_attributes(raw, CFG)
    with pytest.raises(
        ProfileSqlError, match="'push_tokens' is a Braze field amp_braze does not sync"
    ):
        build_attributes(pl.DataFrame({"external_id": ["u"], "push_tokens": ["t"]}), CFG)
