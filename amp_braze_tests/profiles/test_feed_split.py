"""Feeds split once, as they are read, when the pipeline runs in shards: each shard's part holds
the feed's rows of that shard's customers in the feed's order, customer_profiles reads its part
instead of filtering the whole feed, and a part split from another version is not used."""

from __future__ import annotations

import dagster as dg
import polars as pl

from amp_braze.catalogue import source_table
from amp_braze.demo.run import QUIET
from amp_braze.profiles.feed_split import SPLIT_OF
from amp_braze.shards import shard_names, shard_of, shard_stores
from amp_braze_tests.support.brand import make_brand, make_feed

N = 3
TABLE = source_table("crm")


def _feed_with_ties() -> pl.DataFrame:
    """Customers on several rows (their order decides ties) and a row without a key."""
    df = make_feed(600)
    again = df.slice(10, 40).with_columns(pl.format("{}-again", "first_name").alias("first_name"))
    nobody = df.head(1).with_columns(pl.lit(None, pl.String).alias("id"))
    return pl.concat([df, again, nobody])


def _materialized(result: dg.ExecuteInProcessResult, key: str) -> dict:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key
    ]
    return event.materialization.metadata


def test_each_shard_reads_its_part_of_the_feed(tmp_path):
    brand = make_brand(tmp_path, "http://127.0.0.1:9", extra=f"scale: {{shards: {N}}}\n")
    brand.write_feed(_feed_with_ties())
    defs = brand.defs()
    instance = dg.DagsterInstance.ephemeral()
    feeds_job = defs.resolve_job_def("braze_sync_job_feeds")
    meta = _materialized(feeds_job.execute_in_process(instance=instance), "sources/crm")
    assert meta["split_in_shards"].value == N and meta["split_this_run"].value is True

    whole = brand.storage.table_snapshot(TABLE)
    rows = whole.frame.collect()
    shards = shard_of(rows.get_column("id"), N)
    assert rows.height == 641 and shards.n_unique() == N
    for i, store in enumerate(shard_stores(brand.storage, N)):
        part = store.table_snapshot(TABLE)
        assert part.footer[SPLIT_OF] == whole.footer["write_id"]
        # The same rows as the feed filtered to the shard, in the feed's order.
        assert part.frame.collect().equals(rows.filter(shards == i))
    assert shard_stores(brand.storage, N)[0].read_table(TABLE)["id"].null_count() == 1

    # The file did not change: it is not read again, and the parts stand.
    meta = _materialized(feeds_job.execute_in_process(instance=instance), "sources/crm")
    assert meta["read_this_run"].value is False and meta["split_this_run"].value is False

    chain = defs.resolve_job_def("braze_sync_job")
    profiles = [dg.AssetKey("customer_profiles")]
    built = {}
    for shard in shard_names(N):
        done = chain.execute_in_process(
            instance=instance, run_config=QUIET, partition_key=shard, asset_selection=profiles
        )
        assert _materialized(done, "customer_profiles")["feeds_read_as_shard_parts"].value == "crm"
        built[shard] = brand.storage.shard(shard, N).read_table("customer_profiles")
    everyone = pl.concat(built.values())
    assert everyone.height == 600
    # A tie (the same updated_at, the same feed) goes to the row first in the feed.
    assert everyone.filter(pl.col("id") == "user-11")["first_name"].item() == "Name11"

    # A feed version written without its parts (as by an earlier amp_braze): the shard filters
    # the feed, and its profiles are what its part gave.
    brand.storage.write_table(TABLE, rows)
    for shard in shard_names(N):
        done = chain.execute_in_process(
            instance=instance, run_config=QUIET, partition_key=shard, asset_selection=profiles
        )
        assert _materialized(done, "customer_profiles")["feeds_read_as_shard_parts"].value == "none"
        assert brand.storage.shard(shard, N).read_table("customer_profiles").equals(built[shard])
