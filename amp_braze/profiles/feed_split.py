"""Each shard's part of a feed, written once when the feed is read, so that a shard's
customer_profiles reads its own rows instead of hashing every row of every feed.

A shard's part is the feed table's rows whose customer key is in the shard (amp_braze.shards), in
the feed's order, stored in the shard's own storage under the feed's table name, with the write id
of the feed version it was split from (``split_of``). A reader uses the part only when that id is
the one of the feed version it pinned; otherwise (a feed read before it was split, a part another
run is rewriting, a new number of shards) it filters the whole feed, which gives the same rows.
With identity resolution the key is the cluster's amp_id, known only after the feeds are read:
those feeds are not split.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import polars as pl

from amp_braze.catalogue import source_table
from amp_braze.config import SourceConfig
from amp_braze.profiles.unify import feed_key
from amp_braze.shards import in_shard, shard_of, shard_stores
from amp_braze.storage import Snapshot, Storage, parts

SPLIT_OF = "split_of"  # in a shard part's footer: the write id of the feed version split
_SHARD = "__shard"


def _split_of(store: Storage, table: str) -> str | None:
    if not store.table_exists(table):
        return None
    return store.footer(store.table_name(table)).get(SPLIT_OF)


def split_feed(shared: Storage, src: SourceConfig, n: int) -> int:
    """Write every shard's part of the feed table as it is now, unless each part was already
    split from this version; returns the shards written (0: the parts stand). One pass over the
    feed in batches: a feed larger than memory is split in bounded memory."""
    table = source_table(src.name)
    snap = shared.table_snapshot(table)
    of = snap.footer["write_id"]
    stores = shard_stores(shared, n)
    if all(_split_of(s, table) == of for s in stores):
        return 0
    schema = snap.frame.collect_schema()
    key = feed_key(src, "__key")
    with ThreadPoolExecutor(1, thread_name_prefix="amp-braze-split") as pool:
        # Each shard's writer holds about 1/n of a part: the split holds about one part in all.
        writers = [
            parts.PartWriter(s, s.table_name(table), schema, pool, max(parts.PART_ROWS // n, 1))
            for s in stores
        ]
        for batch in snap.frame.collect_batches(chunk_size=parts.PART_ROWS):
            shard = shard_of(batch.select(key).to_series(), n).alias(_SHARD)
            pieces = batch.with_columns(shard).partition_by(
                _SHARD, as_dict=True, maintain_order=True, include_key=False
            )
            for (i,), piece in pieces.items():
                writers[i].add(piece)
        for w in writers:
            w.close({SPLIT_OF: of})
    return n


def shard_part(
    shared: Snapshot, own: Storage, src: SourceConfig, shard: str, n: int
) -> tuple[pl.LazyFrame, bool]:
    """The rows of the feed version ``shared`` in ``shard``, and whether they come from its part
    (split from that version) rather than from the feed filtered (the same rows, at the cost of
    reading and hashing every row)."""
    table = source_table(src.name)
    if own.table_exists(table):
        part = own.table_snapshot(table)
        if part.footer.get(SPLIT_OF) == shared.footer.get("write_id"):
            return part.frame, True
    return shared.frame.filter(in_shard(feed_key(src, "__key"), shard, n)), False
