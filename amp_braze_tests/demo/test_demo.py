"""amp-braze demo: the whole loop on separate systems' feeds, checked against the known customers."""

from __future__ import annotations

import subprocess
import sys

import polars as pl


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
    number = pl.col("record_id").str.slice(1).cast(pl.Int64)
    person = (
        pl.when(pl.col("source") == "pos").then((number - 3) // 7)
        .when(pl.col("source") == "ecommerce").then((number - 5) // 13)
        .otherwise(number)
    )  # fmt: skip
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
    assert f"emulator us: {attributes.height:,} profiles" in proc.stdout
    assert proc.stdout.count("users: EQUAL") == 2
    assert pl.read_parquet(tables / "customer_profiles.parquet").height == ids
