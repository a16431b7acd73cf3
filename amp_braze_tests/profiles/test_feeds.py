"""Source feeds: CSV, Parquet and NDJSON, local, glob and s3://, renames, types, clear errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from amp_braze.config import SourceConfig
from amp_braze.profiles.feeds import FeedError, read_feed
from amp_braze.storage import s3_client

UTC = dt.UTC


def _src(path: str | Path, **kw) -> SourceConfig:
    base = dict(
        name="pos",
        path=str(path),
        format="csv",
        customer_key="customer_id",
        updated_at="updated_at",
        priority=0,
        columns={},
        types={},
        key_normalize="trim",
        separator=",",
    )
    base.update(kw)
    return SourceConfig(**base)


CSV = (
    "customer_id,EMAIL,PHONE,zip,dob,vip,updated_at\n"
    "007,A@X.COM,+1 555 010 9999,02134,1980-12-21,yes,2026-01-02 03:04:05\n"
    "8,b@x.com,0044 20 7946 0000,,not a date,no,2026-01-03\n"
)


def test_csv_with_renames_types_and_leading_zeros(tmp_path):
    (tmp_path / "pos.csv").write_text(CSV)
    src = _src(
        tmp_path / "pos.csv",
        columns={"EMAIL": "email", "PHONE": "phone"},
        types={"phone": "string", "zip": "string", "dob": "date", "vip": "bool"},
    )
    df = read_feed(src)
    assert df.columns == ["customer_id", "email", "phone", "zip", "dob", "vip", "updated_at"]
    assert df["customer_id"].to_list() == ["007", "8"]
    assert df["zip"].to_list() == ["02134", None]
    # Phones are normalised as they are read (US, the default region): E.164 when valid, as
    # typed when not (555 is no area code).
    assert df["phone"].to_list() == ["+1 555 010 9999", "+442079460000"]
    assert df["dob"].to_list() == [dt.date(1980, 12, 21), None]
    assert df["vip"].to_list() == [True, False]
    assert df["updated_at"].to_list() == [
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        dt.datetime(2026, 1, 3, tzinfo=UTC),
    ]


def test_parquet_and_ndjson_and_globs(tmp_path):
    pl.DataFrame(
        {"customer_id": ["1", "2"], "tier": ["gold", None], "updated_at": [dt.date(2026, 1, 1)] * 2}
    ).write_parquet(tmp_path / "loyalty_1.parquet")
    pl.DataFrame(
        {"customer_id": ["3"], "tier": ["silver"], "updated_at": [dt.date(2026, 2, 1)]}
    ).write_parquet(tmp_path / "loyalty_2.parquet")
    df = read_feed(_src(tmp_path / "loyalty_*.parquet", format="parquet"))
    assert sorted(df["customer_id"].to_list()) == ["1", "2", "3"]
    assert df.schema["updated_at"] == pl.Datetime("us", "UTC")

    (tmp_path / "ecom.ndjson").write_text(
        '{"cid": 5, "points": 10, "updated_at": "2026-03-01T10:00:00Z"}\n'
        '{"cid": 6, "points": null, "updated_at": "2026-03-02T11:30:00+01:00"}\n'
    )
    df = read_feed(
        _src(tmp_path / "ecom.ndjson", format="ndjson", customer_key="id", columns={"cid": "id"})
    )
    assert df["id"].to_list() == ["5", "6"]
    assert df["points"].to_list() == [10, None]
    assert df["updated_at"].to_list() == [
        dt.datetime(2026, 3, 1, 10, tzinfo=UTC),
        dt.datetime(2026, 3, 2, 10, 30, tzinfo=UTC),
    ]


def test_s3_feed(s3_bucket):
    s3_client().put_object(Bucket=s3_bucket, Key="feeds/pos.csv", Body=CSV.encode())
    df = read_feed(_src(f"s3://{s3_bucket}/feeds/pos.csv", columns={"EMAIL": "email"}))
    assert df["email"].to_list() == ["A@X.COM", "b@x.com"]


def test_missing_file_and_missing_columns_name_the_key(tmp_path):
    with pytest.raises(FeedError, match=r"sources\.pos\.path: no file matches .*/nope\.csv"):
        read_feed(_src(tmp_path / "nope.csv"))
    (tmp_path / "pos.csv").write_text(CSV)
    with pytest.raises(
        FeedError, match=r"sources\.pos\.customer_key: column 'cust' is not in the feed"
    ):
        read_feed(_src(tmp_path / "pos.csv", customer_key="cust"))
    with pytest.raises(FeedError, match=r"sources\.pos\.columns: column 'MAIL' is not in the feed"):
        read_feed(_src(tmp_path / "pos.csv", columns={"MAIL": "email"}))
    with pytest.raises(
        FeedError, match=r"sources\.pos\.updated_at: column 'changed' is not in the feed"
    ):
        read_feed(_src(tmp_path / "pos.csv", updated_at="changed"))
    with pytest.raises(
        FeedError, match=r"sources\.pos\.types\.points: column 'points' is not in the feed"
    ):
        read_feed(_src(tmp_path / "pos.csv", types={"points": "int"}))


def test_s3_glob_feed(s3_bucket):
    client = s3_client()
    client.put_object(
        Bucket=s3_bucket, Key="feeds/pos_1.csv", Body=b"customer_id,updated_at\n1,2026-01-01\n"
    )
    client.put_object(
        Bucket=s3_bucket, Key="feeds/pos_2.csv", Body=b"customer_id,updated_at\n2,2026-01-02\n"
    )
    df = read_feed(_src(f"s3://{s3_bucket}/feeds/pos_*.csv"))
    assert sorted(df["customer_id"].to_list()) == ["1", "2"]


def test_a_feed_whose_files_did_not_change_is_not_read_again(tmp_path):
    """Same files, same configuration: the table is already what reading would give. A changed
    file or a changed configuration is read again, and the table is exactly a fresh read."""
    import dagster as dg

    from amp_braze.config import load_config
    from amp_braze.definitions import build_defs
    from amp_braze.profiles.feeds import read_feed
    from amp_braze.storage import Storage
    from amp_braze_tests.support.assets import assets_named
    from amp_braze_tests.support.configs import MINIMAL, write_config
    from amp_braze_tests.support.metadata import plain

    (tmp_path / "pos.csv").write_text(
        "customer_id,updated_at,city\n1,2026-01-01,Oslo\n2,2026-01-02,Rome\n"
    )

    def materialize(body: str) -> tuple[dict, object]:
        cfg = load_config(write_config(tmp_path, body))
        defs = build_defs(cfg)
        result = dg.materialize(assets_named(defs, "sources/pos"), resources=defs.resources,
                                instance=dg.DagsterInstance.ephemeral())  # fmt: skip
        (event,) = result.get_asset_materialization_events()
        meta = plain(event.materialization.metadata)
        return meta, cfg

    first, cfg = materialize(MINIMAL)
    table = Storage(cfg.storage).table_name("sources/pos")
    written = (Path(cfg.storage) / table).stat().st_mtime_ns
    again, _ = materialize(MINIMAL)
    assert first["read_this_run"] is True and again["read_this_run"] is False
    assert again["dagster/row_count"] == first["dagster/row_count"] == 2
    assert again["distinct_customers"] == 2
    assert (Path(cfg.storage) / table).stat().st_mtime_ns == written  # not rewritten

    with (tmp_path / "pos.csv").open("a") as f:
        f.write("3,2026-01-03,Lima\n")
    changed, cfg = materialize(MINIMAL)
    assert changed["read_this_run"] is True and changed["dagster/row_count"] == 3
    retyped, cfg = materialize(
        MINIMAL.replace(
            "updated_at: updated_at", "updated_at: updated_at\n    types: {city: string}"
        )
    )
    assert retyped["read_this_run"] is True
    stored = Storage(cfg.storage).read_table("sources/pos")
    assert stored.equals(read_feed(cfg.sources["pos"]))


UK_TILL = (
    "customer_id,PHONE,mobile,updated_at\n"
    "C1,020 7946 0958,07911 123456,2026-01-02\n"
    "C2,(020) 7946-0958,+33 6 12 34 56 78,2026-01-02\n"
    "C3,+1 (415) 555-0132,0044 7911 123456,2026-01-02\n"
    "C4, 020 7946 095 ,,2026-01-02\n"  # a digit short: kept as typed (trimmed)
    "C5,,   ,2026-01-02\n"
    "020 7946 0958,020 7946 0958 ext. 12,n/a,2026-01-02\n"  # a key is never normalised
)


def test_a_uk_feed_reads_its_phones_as_british_numbers(tmp_path):
    """``phone`` and every column typed ``phone`` become E.164 in the feed's region, whatever the
    formatting; a number that is not valid keeps its text (the Braze rule sets it aside)."""
    (tmp_path / "uk.csv").write_text(UK_TILL)
    src = _src(
        tmp_path / "uk.csv",
        columns={"PHONE": "phone"},
        types={"mobile": "phone"},
        phone_region="GB",
    )
    df = read_feed(src)
    assert df["customer_id"].to_list() == ["C1", "C2", "C3", "C4", "C5", "020 7946 0958"]
    assert df["phone"].to_list() == [
        "+442079460958", "+442079460958", "+14155550132", "020 7946 095", None, "+442079460958",
    ]  # fmt: skip
    assert df["mobile"].to_list() == [
        "+447911123456", "+33612345678", "+447911123456", None, None, "n/a",
    ]  # fmt: skip
    # The same file read as a US feed: national numbers mean something else (or nothing).
    us = read_feed(_src(tmp_path / "uk.csv", columns={"PHONE": "phone"}, types={"mobile": "phone"}))
    assert us["phone"].to_list()[:3] == ["020 7946 0958", "(020) 7946-0958", "+14155550132"]


def test_a_till_across_countries_reads_each_row_in_its_store_country(tmp_path):
    (tmp_path / "pos.csv").write_text(
        "customer_id,phone,store_country,updated_at\n"
        "1,020 7946 0958,GB,2026-01-02\n"
        "2,030 1234567,de,2026-01-02\n"
        "3,01 23 45 67 89,FR,2026-01-02\n"
        "4,(415) 555-0132,,2026-01-02\n"  # blank: the feed's own region
        "5,(415) 555-0132,Atlantis,2026-01-02\n"  # unknown: the feed's own region
    )
    src = _src(tmp_path / "pos.csv", phone_region_column="store_country")
    assert read_feed(src)["phone"].to_list() == [
        "+442079460958", "+49301234567", "+33123456789", "+14155550132", "+14155550132",
    ]  # fmt: skip
    with pytest.raises(FeedError, match=r"sources\.pos\.phone_region_column: column 'country'"):
        read_feed(_src(tmp_path / "pos.csv", phone_region_column="country"))


def test_a_gb_feed_through_the_configuration_and_its_asset(tmp_path):
    """sources.<name>.phone_region from the YAML file, through sources/<name> as Dagster
    materializes it: the stored table holds E.164."""
    import dagster as dg

    from amp_braze.config import load_config
    from amp_braze.definitions import build_defs
    from amp_braze.storage import Storage
    from amp_braze_tests.support.assets import assets_named
    from amp_braze_tests.support.configs import MINIMAL, write_config

    (tmp_path / "pos.csv").write_text(UK_TILL)
    body = MINIMAL.replace(
        "    updated_at: updated_at",
        "    updated_at: updated_at\n    columns: {PHONE: phone}\n    types: {mobile: phone}\n"
        "    phone_region: gb",
    )
    cfg = load_config(write_config(tmp_path, body))
    assert cfg.sources["pos"].phone_region == "GB" and cfg.phone_region == "US"
    defs = build_defs(cfg)
    dg.materialize(assets_named(defs, "sources/pos"), resources=defs.resources,
                   instance=dg.DagsterInstance.ephemeral())  # fmt: skip
    stored = Storage(cfg.storage).read_table("sources/pos")
    assert stored["phone"].to_list()[:3] == ["+442079460958", "+442079460958", "+14155550132"]
    assert stored["mobile"].to_list()[0] == "+447911123456"
