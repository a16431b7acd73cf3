"""amp-braze demo: the whole loop on separate systems' feeds, checked against the known customers."""

from __future__ import annotations

import re
import subprocess
import sys

import polars as pl
import pytest

from amp_braze.profiles.sample_data import customer_of_record


@pytest.mark.slow
def test_demo_command_runs_the_loop_and_checks_braze(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "amp_braze.cli", "demo", "--profiles", "2000", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The feeds share no key: identity resolution finds the 2,000 customers behind them. Each
    # record id encodes the generator's customer number, so the truth is known here.
    tables = tmp_path / "demo/.amp_braze/storage/tables"
    clusters = pl.read_parquet(tables / "identity_clusters.parquet")
    person = customer_of_record()
    clusters = clusters.with_columns(person.alias("person"))
    assert clusters["person"].n_unique() == 2000
    people_per_id = clusters.group_by("amp_id").agg(pl.col("person").n_unique())["person"]
    ids_per_person = clusters.group_by("person").agg(pl.col("amp_id").n_unique())["amp_id"]
    assert people_per_id.max() == 1  # nobody merged with someone else
    assert (ids_per_person > 1).mean() < 0.03  # at most 3% of customers left in two pieces
    ids = clusters["amp_id"].n_unique()
    assert f"resolved into {ids:,} people (amp_id)" in proc.stdout
    assert f"customer_profiles {ids:>10,} unified customers" in proc.stdout
    # Two syncs to two emulated workspaces, each reported, each holding what its syncs want.
    assert "sync profiles_us (orchestration to us):" in proc.stdout
    assert "sync winback_eu (campaign to eu):" in proc.stdout
    assert proc.stdout.count("    day two:") == 2
    attributes = pl.read_parquet(tables / "braze_customer_attributes.parquet")
    # Braze creates a profile for an order's customer it does not hold yet: the few customers
    # whose attribute row the field rules set aside exist there through their orders alone.
    orders = pl.read_parquet(tmp_path / "demo/.amp_braze/demo_data/web_orders.parquet")
    buyers = clusters.filter(pl.col("source") == "ecommerce").join(
        orders.select(pl.col("account_id").alias("record_id")).unique(), on="record_id"
    )
    only_orders = set(buyers["amp_id"]) - set(attributes["external_id"])
    assert f"emulator us: {attributes.height + len(only_orders):,} profiles" in proc.stdout
    # us: attributes and the newsletter's subscription-group states; eu: attributes
    assert re.search(
        r"emulator us: .* users and [0-9,]+ subscription-group states: EQUAL", proc.stdout
    )
    assert re.search(r"emulator eu: .* users: EQUAL", proc.stdout)
    assert proc.stdout.count("events once: EQUAL") == 1
    assert pl.read_parquet(tables / "customer_profiles.parquet").height == ids
    # The web orders, each once as ecommerce.order_placed (no data points); day two's orders
    # are the only ones sent again.
    new = orders.filter(pl.col("placed_at") == pl.datetime(2026, 11, 2, 12, time_zone="UTC")).height
    assert new > 0
    assert (
        f"day one {orders.height - new:,} sent, 0 set aside; day two {new:,} sent, "
        f"{orders.height - new:,} already sent (not again), 0 data points"
    ) in proc.stdout
    assert f"Braze holds each of its {orders.height:,} events once: EQUAL" in proc.stdout
    # European customers: their stores' tills wrote local numbers (020 7946 0958, 030 1234567,
    # 01 23 45 67 89); what reaches Braze is E.164, the eu workspace's campaign included.
    phones = attributes["phone"].drop_nulls()
    assert phones.str.contains(r"^\+[1-9][0-9]{6,14}$").all()
    for code in ("+1", "+44", "+49", "+33"):
        assert phones.str.starts_with(code).sum() > 20, code
    lines = proc.stdout.splitlines()
    eu_at = next(i for i, line in enumerate(lines) if line.startswith("  emulator eu:"))
    eu_line = lines[eu_at + 1]
    assert eu_line.startswith("    phones: ")
    for code, country in (("44", "GB"), ("49", "DE"), ("33", "FR")):
        found = re.search(rf"\+{code} \({country}\) ([0-9,]+) e\.g\. \+{code}[0-9]+", eu_line)
        assert found and int(found.group(1).replace(",", "")) > 0, (code, eu_line)
    # A number that is not valid is not sent, and the rest of its row is: it is listed with its
    # column in the rejection table, and its user is among those ready.
    rejections = pl.read_parquet(tables / "braze_customer_attributes_rejections.parquet")
    bad = rejections.filter(pl.col("rule") == "phone_invalid")
    assert bad.height > 0 and (bad["column"] == "phone").all()
    assert bad["__id"].is_in(attributes["__id"].implode()).all()
    assert (
        attributes.filter(pl.col("__id").is_in(bad["__id"].implode()))["phone"].null_count()
        == bad.height
    )
