"""Braze field rules: every standard field and every dtype, good and bad values, exact outputs."""

from __future__ import annotations

import datetime as dt
import decimal

import polars as pl
import pytest

from amp_braze.config import BrazeConfig
from amp_braze.profiles.attributes import ProfileSqlError, build_attributes, sent_columns

CFG = BrazeConfig(instance="US-03")


def _one_column(name: str, values: list, dtype: pl.DataType | None = None, cfg: BrazeConfig = CFG):
    n = len(values)
    raw = pl.DataFrame(
        {"external_id": [f"u{i}" for i in range(n)], name: pl.Series(name, values, dtype=dtype)}
    )
    out = build_attributes(raw, cfg)
    accepted = dict(zip(out.table["external_id"].to_list(), out.table[name].to_list(), strict=True))
    rejected = dict(zip(out.rejections["identifier"], out.rejections["rule"], strict=True))
    # A row accepted without a value a field rule set aside (a phone) reports that rule.
    return [rejected.get(f"u{i}", accepted.get(f"u{i}")) for i in range(n)], out


@pytest.mark.parametrize(
    ("field", "values", "expected"),
    [
        ("email", [" Ann@Example.COM ", "bob@x.io", "n/a", "a@b", "two@@x.com", None, "  "],
         ["ann@example.com", "bob@x.io", "email_format", "email_format", "email_format", None, None]),
        ("phone", ["(415) 555-0132", "415.555.0132", "+1 415 555 0132", "14155550132", "0044 20 7946 0000",
                   "+44 (0)20 7946 0000", "011 44 20 7946 0000", "(415) 555-0132 ext. 12",
                   "(555) 123-4567", "ext. 12", "  ", None],
         ["+14155550132"] * 4 + ["+442079460000"] * 3 + ["+14155550132", "phone_invalid",
          "phone_invalid", None, None]),
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


# -- phones: read in the top-level region; an invalid one holds back nothing else -----------------


def test_national_numbers_are_read_in_the_top_level_region():
    raw = pl.DataFrame(
        {
            "external_id": ["a", "b", "c"],
            "phone": ["020 7946 0958", "+1 415 555 0132", "07911 123456"],
        }
    )
    gb = build_attributes(raw, BrazeConfig(instance="EU-01", phone_region="GB"))
    assert gb.table["phone"].to_list() == ["+442079460958", "+14155550132", "+447911123456"]
    # The default region is the US: the same national numbers are not valid there.
    us = build_attributes(raw, CFG)
    assert us.table["phone"].to_list() == [None, "+14155550132", None]
    assert us.rejections.filter(pl.col("rule") == "phone_invalid")["value"].to_list() == [
        "020 7946 0958", "07911 123456",
    ]  # fmt: skip
    # And the region passed in wins over the destination's.
    fr = build_attributes(raw.with_columns(phone=pl.lit("01 23 45 67 89")), CFG, phone_region="FR")
    assert fr.table["phone"].to_list() == ["+33123456789"] * 3


def test_a_bad_phone_sends_the_rest_of_its_row():
    raw = pl.DataFrame(
        {
            "external_id": ["ok", "bad_phone", "bad_both", "no_phone"],
            "email": ["ok@x.io", "Bad.Phone@X.io", "not-an-email", "np@x.io"],
            "phone": ["(415) 555-0132", "(555) 123-4567", "12", None],
            "tier": ["gold", "silver", "bronze", "gold"],
        }
    )
    out = build_attributes(raw, CFG)
    # The row with the bad phone is accepted: its other attributes go out, its phone is null and
    # the value set aside is kept beside it (the planner leaves Braze's phone alone for it).
    assert out.table.select("external_id", "email", "phone", "tier", "__held_phone").rows() == [
        ("ok", "ok@x.io", "+14155550132", "gold", None),
        ("bad_phone", "bad.phone@x.io", None, "silver", "(555) 123-4567"),
        ("no_phone", "np@x.io", None, "gold", None),
    ]
    # A row set aside for another reason lists its bad phone too.
    assert out.rejections.sort("identifier", "column").select(
        "identifier", "column", "value", "rule"
    ).rows() == [
        ("bad_both", "email", "not-an-email", "email_format"),
        ("bad_both", "phone", "12", "phone_invalid"),
        ("bad_phone", "phone", "(555) 123-4567", "phone_invalid"),
    ]
    assert (out.input_rows, out.rejected_rows) == (4, 1)  # a field set aside is no row set aside
    assert "__held_phone" not in sent_columns(out.table, "external_id")


def test_an_unchanged_row_with_a_bad_phone_is_reused_and_still_reported():
    """The incremental build reuses accepted rows whose SQL row did not change, so a row with a
    bad phone is not checked again; its rejection is read off the table and stays listed."""
    raw = pl.DataFrame(
        {
            "external_id": [f"u{i}" for i in range(6)],
            "phone": ["(415) 555-0132", "(555) 123-4567", None, "n/a", "415 555 0133", "x"],
            "ltv": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    first = _build_from_changes(raw)
    again = _build_from_changes(raw, first)
    assert again.incremental and again.rows_built == 0
    listed = again.attributes.rejections.sort("identifier").select("identifier", "value").rows()
    assert listed == [("u1", "(555) 123-4567"), ("u3", "n/a"), ("u5", "x")]
    assert (
        listed
        == first.attributes.rejections.sort("identifier").select("identifier", "value").rows()
    )
    # The phone fixed: that row is built again and its rejection is gone.
    fixed = _build_from_changes(
        raw.with_columns(phone=pl.col("phone").replace("x", "415 555 0135")), again
    )
    assert fixed.rows_built == 1
    assert fixed.attributes.rejections["identifier"].to_list() == ["u1", "u3"]
    assert (
        fixed.attributes.table.filter(pl.col("external_id") == "u5")["phone"].item()
        == "+14155550135"
    )


def _build_from_changes(raw: pl.DataFrame, after=None):
    from amp_braze.profiles.incremental import FINGERPRINT, attributes_from_changes
    from amp_braze.storage import Snapshot

    last = (
        Snapshot(after.attributes.table.lazy(), {FINGERPRINT: after.fingerprint}) if after else None
    )
    return attributes_from_changes(lambda: raw, CFG, last)


def test_the_planner_never_unsets_a_phone_set_aside():
    """Braze holds a phone; this run's number is not valid: the phone is not sent (a null would
    unset it), the user's other changes are."""
    from amp_braze.braze.plan_columns import flag
    from amp_braze.sync.plan import plan_delta

    raw = pl.DataFrame(
        {
            "external_id": ["a", "b", "c"],
            "phone": ["(555) 123-4567", "(415) 555-0199", None],
            "tier": ["gold", "silver", "gold"],
        }
    )
    wanted = build_attributes(raw, CFG).table
    state = pl.DataFrame(
        {
            "__id": ["a", "b", "c"],
            "phone": ["+14155550101", "+14155550102", "+14155550103"],
            "tier": ["silver", "silver", "gold"],
        }
    )
    plan = plan_delta(wanted, state, CFG, [])
    sent = {
        r["__id"]: {a: r[a] for a in ("phone", "tier") if r[flag(a)]} for r in plan.table.to_dicts()
    }
    # a: the bad phone is not sent, the new tier is; b: a new valid phone; c: phone emptied in
    # the feed, which does unset it.
    assert sent == {"a": {"tier": "gold"}, "b": {"phone": "+14155550199"}, "c": {"phone": None}}
    assert plan.stats["full_sync_data_points"] == 1 + 3  # the non-null phone (b) and tiers


def test_a_bad_phone_end_to_end_through_the_sync(tmp_path, emulator, monkeypatch):
    """Materialized with Dagster against the emulator: a user whose phone is not valid gets the
    rest of the profile; a phone that stops being valid is left as Braze had it; a fixed one goes."""
    from amp_braze_tests.support.brand import assert_braze_matches, make_brand, make_feed

    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=40)
    good = pl.format("+1 (415) 555-{}", (pl.col("i") + 100).cast(pl.String).str.zfill(4))
    feed = make_feed(40).with_row_index("i").with_columns(
        phone=pl.when(pl.col("i") == 3).then(pl.lit("(555) 123-4567"))  # never valid
        .when(pl.col("i") == 4).then(pl.lit("020 7946 0958"))  # a British number in a US feed
        .otherwise(good)
    ).drop("i")  # fmt: skip
    brand.write_feed(feed)
    _, meta = brand.sync()
    users = emulator.users()
    assert len(users) == 40 and meta["braze_customer_attributes"]["rejected_rows"] == 0
    assert "phone" not in users["user-3"] and users["user-3"]["email"] == "user3@example.com"
    assert users["user-3"]["custom_attributes"]["tier"] == "bronze"
    assert users["user-5"]["phone"] == "+14155550105"
    rejections = brand.storage.read_table("braze_customer_attributes_rejections")
    assert rejections.sort("identifier").select("identifier", "column", "value", "rule").rows() == [
        ("user-3", "phone", "(555) 123-4567", "phone_invalid"),
        ("user-4", "phone", "020 7946 0958", "phone_invalid"),
    ]
    assert_braze_matches(brand, emulator)

    # Day two: user-5's number is mistyped and its tier changes; user-3's number is fixed.
    day2 = feed.with_columns(
        phone=pl.when(pl.col("id") == "user-5").then(pl.lit("415 555 010"))
        .when(pl.col("id") == "user-3").then(pl.lit("415.555.0199"))
        .otherwise(pl.col("phone")),
        tier=pl.when(pl.col("id") == "user-5").then(pl.lit("platinum")).otherwise(pl.col("tier")),
    )  # fmt: skip
    brand.write_feed(day2)
    _, meta = brand.sync()
    users = emulator.users()
    assert users["user-5"]["phone"] == "+14155550105"  # kept, not unset
    assert users["user-5"]["custom_attributes"]["tier"] == "platinum"
    assert users["user-3"]["phone"] == "+14155550199"
    # Sent: user-5's tier (and so its gold segment flag), user-3's phone; nothing else.
    assert meta["braze_sync"]["users_sent"] == 2 and meta["braze_sync"]["attributes_sent"] == 3
    rejections = brand.storage.read_table("braze_customer_attributes_rejections")
    assert sorted(rejections["identifier"].to_list()) == ["user-4", "user-5"]
    assert_braze_matches(brand, emulator)
