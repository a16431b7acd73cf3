"""customer_profiles: survivorship across feeds, key normalisation, S3 storage, the sample feeds."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import dagster as dg
import polars as pl

from amp_braze.config import load_config
from amp_braze.definitions import build_defs
from amp_braze.profiles.sample_data import generate
from amp_braze.storage import Storage
from amp_braze_tests.support.configs import write_config
from amp_braze_tests.support.metadata import materialized


def _materialize(config_path: Path) -> tuple[dg.ExecuteInJobResult, Storage]:
    cfg = load_config(config_path)
    defs = build_defs(cfg)
    wanted = [
        a for a in defs.assets if all(k.path[0] in ("sources", "customer_profiles") for k in a.keys)
    ]
    result = dg.materialize(
        wanted, resources=defs.resources, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    return result, Storage(cfg.storage)


CONFLICTS = """
storage: ./store
sources:
  pos:
    path: pos.csv
    customer_key: customer_id
    updated_at: updated_at
    priority: 1
    columns: {EMAIL: email}
    key_normalize: trim
  ecommerce:
    path: ecom.ndjson
    customer_key: customer_id
    updated_at: updated_at
    priority: 2
  loyalty:
    path: loyalty.parquet
    customer_key: customer_id
    updated_at: changed
    priority: 3
profile_sql: profile.sql
braze: {rest_endpoint: "http://127.0.0.1:9"}
"""


def _conflicting_feeds(folder: Path) -> None:
    (folder / "pos.csv").write_text(
        textwrap.dedent(
            """\
            customer_id,EMAIL,first_name,city,updated_at
            c1,old@x.com,Ann,Boston,2026-01-01 00:00:00
            c1,older@x.com,Anne,Austin,2025-06-01 00:00:00
            c2,c2@pos.com,Bob,,2026-03-01 00:00:00
            " c3 ",c3@pos.com,Cy,Denver,2026-02-01 00:00:00
            ,nokey@x.com,Nobody,Nowhere,2026-02-01 00:00:00
            c4,c4@pos.com,   ,Reno,
            """
        )
    )
    (folder / "ecom.ndjson").write_text(
        '{"customer_id": "c1", "email": "new@x.com", "first_name": null, "city": "Seattle", "updated_at": "2026-02-01T00:00:00Z"}\n'
        '{"customer_id": "c2", "email": "c2@ecom.com", "first_name": "Robert", "city": "Miami", "updated_at": "2026-03-01T00:00:00Z"}\n'
        '{"customer_id": "c4", "email": null, "first_name": "Dee", "city": null, "updated_at": null}\n'
    )
    pl.DataFrame(
        {
            "customer_id": ["c1", "c3"],
            "tier": ["gold", "silver"],
            "city": [None, "Toronto"],
            "changed": [dt.datetime(2025, 1, 1), dt.datetime(2026, 2, 1)],
        }
    ).write_parquet(folder / "loyalty.parquet")


def test_survivorship_newest_non_null_then_priority(tmp_path):
    _conflicting_feeds(tmp_path)
    result, storage = _materialize(write_config(tmp_path, CONFLICTS))
    df = storage.read_table("customer_profiles").sort("customer_id")
    rows = {r["customer_id"]: r for r in df.iter_rows(named=True)}
    assert list(rows) == ["c1", "c2", "c3", "c4"]
    # c1: ecommerce is newest (Feb) for email and city, its first_name is null -> POS Jan wins.
    assert (rows["c1"]["email"], rows["c1"]["first_name"], rows["c1"]["city"], rows["c1"]["tier"]) == (
        "new@x.com", "Ann", "Seattle", "gold",
    )  # fmt: skip
    # c2: same timestamp in POS and ecommerce -> ecommerce (priority 2) wins; POS has no city.
    assert (rows["c2"]["email"], rows["c2"]["first_name"], rows["c2"]["city"]) == (
        "c2@ecom.com",
        "Robert",
        "Miami",
    )
    # c3: key " c3 " trimmed; POS and loyalty tie on time -> loyalty (priority 3) wins the city.
    assert (rows["c3"]["email"], rows["c3"]["city"], rows["c3"]["tier"]) == (
        "c3@pos.com",
        "Toronto",
        "silver",
    )
    # c4: neither row has a timestamp -> priority; blank first_name in POS counts as missing.
    assert (rows["c4"]["email"], rows["c4"]["first_name"], rows["c4"]["city"]) == (
        "c4@pos.com",
        "Dee",
        "Reno",
    )
    assert rows["c1"]["source_feeds"] == ["ecommerce", "loyalty", "pos"]
    assert rows["c1"]["profile_updated_at"] == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)

    meta = materialized(result)["customer_profiles"]
    assert meta["dagster/row_count"] == 4
    assert meta["customers_from_pos"] == 4 and meta["customers_from_loyalty"] == 2
    assert meta["rows_without_key"] == 1
    # fields won: email c1 ecom, c2 ecom, c3 pos, c4 pos; first_name c1 pos, c2 ecom, c3 pos, c4 ecom;
    # city c1 ecom, c2 ecom, c3 loyalty, c4 pos; tier c1 loyalty, c3 loyalty.
    assert (
        meta["fields_won_by_pos"],
        meta["fields_won_by_ecommerce"],
        meta["fields_won_by_loyalty"],
    ) == (5, 6, 3)
    names = [c.name for c in meta["dagster/column_schema"].columns]
    assert names == [
        "customer_id",
        "email",
        "first_name",
        "city",
        "tier",
        "profile_updated_at",
        "source_feeds",
    ]
    pos = materialized(result)["sources/pos"]
    assert (pos["dagster/row_count"], pos["distinct_customers"], pos["duplicate_key_rows"]) == (
        6,
        4,
        1,
    )


def test_email_key_normalization_joins_feeds(tmp_path):
    (tmp_path / "a.csv").write_text("email,name,ts\n  Ann@X.com ,Ann,2026-01-01\n")
    (tmp_path / "b.csv").write_text("mail,tier,ts\nann@x.COM,gold,2026-01-02\n")
    body = """
    storage: ./store
    sources:
      a: {path: a.csv, customer_key: email, updated_at: ts, key_normalize: email}
      b: {path: b.csv, customer_key: email, updated_at: ts, key_normalize: email, columns: {mail: email}}
    profile_sql: profile.sql
    braze: {rest_endpoint: "http://127.0.0.1:9"}
    """
    _, storage = _materialize(write_config(tmp_path, body))
    df = storage.read_table("customer_profiles")
    assert df.select("email", "name", "tier").rows() == [("ann@x.com", "Ann", "gold")]


def test_profiles_on_s3_storage(tmp_path, s3_bucket):
    _conflicting_feeds(tmp_path)
    body = CONFLICTS.replace("storage: ./store", f"storage: s3://{s3_bucket}/amp")
    _, storage = _materialize(write_config(tmp_path, body))
    assert storage.is_s3
    assert storage.read_table("customer_profiles").height == 4


def test_generator_is_deterministic_and_messy(tmp_path):
    a = generate(tmp_path / "a", customers=3000, seed=11)
    b = generate(tmp_path / "b", customers=3000, seed=11)
    for x, y in ((a.pos, b.pos), (a.ecommerce, b.ecommerce), (a.loyalty, b.loyalty)):
        assert x.read_bytes() == y.read_bytes()
    pos = pl.read_csv(a.pos, infer_schema=False)
    emails = pos["EMAIL"].drop_nulls()
    assert emails.str.contains(r"^[A-Z]").sum() > 0  # mixed case
    assert (emails != emails.str.strip_chars()).sum() > 0  # padded
    phones = pos["PHONE"].drop_nulls()
    for pattern in (
        r"^\(\d{3}\) \d{3}-\d{4}$",
        r"^\d{3}\.\d{3}\.\d{4}$",
        r"^\+1 \d{3} \d{3} \d{4}$",
        r"^\d{10}$",
    ):
        assert phones.str.contains(pattern).sum() > 0, pattern
    assert pos["EMAIL"].null_count() > 0
    assert pos.height > pos["customer_id"].n_unique()  # a few duplicates
    ecom = pl.read_parquet(a.ecommerce)
    loy = pl.read_ndjson(a.loyalty)
    ids = [set(pos["customer_id"]), set(ecom["customer_id"]), set(loy["member_customer_id"])]
    assert len(ids[0] | ids[1] | ids[2]) == 3000
    assert len(ids[0] & ids[1] & ids[2]) > 100  # in all three feeds
    both = pos.unique("customer_id").join(ecom.unique("customer_id"), on="customer_id")
    assert (both["first_name"] != both["first_name_right"]).sum() > 0  # conflicting values
