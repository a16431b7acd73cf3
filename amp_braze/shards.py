"""Which shard a customer belongs to, and the shard layout a storage root was built with.

A customer's shard is the first 8 bytes of the MD5 digest of its key's UTF-8 text (an integer key
as its decimal digits), read as a big-endian unsigned 64-bit integer, modulo the number of shards;
a customer without a key is in the first shard. MD5 is fixed by RFC 1321, so the answer is the
same on every machine and in every version of amp_braze, polars or DuckDB (polars' own ``hash``
promises that only within one polars version); amp_braze_tests/test_shards.py holds fixed
vectors. A customer moves shard only when the number of shards changes.

The layout (the number of shards and the rule) is recorded in the storage root the first time a
plan or a sync runs; a later run with another number is refused rather than planned against a
sync state split another way.
"""

from __future__ import annotations

import orjson
import polars as pl

from amp_braze.storage import Storage

RULE = "md5-64be"  # the name of the rule above, recorded with the layout
LAYOUT = "shards/layout.json"
PREFIX = "shard_"


def shard_names(n: int) -> list[str]:
    """The partition keys of n shards: shard_00, shard_01, ..."""
    return [f"{PREFIX}{i:02d}" for i in range(n)]


def shard_index(name: str) -> int:
    return int(name.removeprefix(PREFIX))


def shard_of(keys: pl.Series, n: int) -> pl.Series:
    """Each key's shard number (UInt16) among n shards."""
    if n == 1:
        return pl.zeros(len(keys), pl.UInt16, eager=True).rename(keys.name)
    text = pl.DataFrame({"k": keys.cast(pl.String)}).to_arrow()
    import duckdb  # here: most steps never hash a key, and a step process stays smaller

    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        con.register("keys", text)
        shards = con.sql(
            f"SELECT coalesce((('0x' || md5(k)[1:16])::UBIGINT % {int(n)})::USMALLINT, 0) AS s "
            "FROM keys"
        ).pl()
    return shards.get_column("s").rename(keys.name)


def shard_stores(shared: Storage, n: int) -> list[Storage]:
    """Every shard's storage (the root itself when not split)."""
    return [shared.shard(name, n) for name in shard_names(n)] if n > 1 else [shared]


def in_shard(key: pl.Expr, shard: str, n: int) -> pl.Expr:
    """True for the rows of ``key`` that belong to ``shard`` of n."""
    i = shard_index(shard)
    return key.map_batches(lambda s: shard_of(s, n), return_dtype=pl.UInt16) == i


class LayoutChanged(Exception):
    """The storage root was split in another number of shards than the configuration asks for."""


def recorded_shards(shared: Storage) -> int:
    """The number of shards the storage root's sync state is split in (1: never split)."""
    recorded = shared.read_json(LAYOUT)
    return int(recorded["shards"]) if recorded else 1


def record_layout(shared: Storage, n: int, replace: bool = False) -> None:
    """Write the layout: create-only on first use (two first runs agree on one), replacing it
    only when the state was split again (``amp-braze reshard``)."""
    body = orjson.dumps({"shards": n, "rule": RULE})
    if replace:
        shared.write_bytes(LAYOUT, body)
    else:
        shared.create_bytes(LAYOUT, body)


def check_layout(shared: Storage, n: int) -> None:
    """Record the layout on first use; refuse a run whose number of shards differs from the
    recorded one (each shard's sync state holds only its own customers: planned against another
    split, users of other shards would look gone, and users never seen would be sent again)."""
    recorded = shared.read_json(LAYOUT)
    if recorded is None:
        if n == 1:
            return  # an unsharded root stays as it always was
        if not any("/state/" in name for name in shared.list("sync")):
            record_layout(shared, n)
        recorded = shared.read_json(LAYOUT) or {"shards": 1, "rule": RULE}
    if recorded.get("shards") != n or recorded.get("rule") != RULE:
        raise LayoutChanged(
            f"the sync state in {shared.root} is split in {recorded.get('shards')} shard(s) and "
            f"the configuration asks for scale.shards = {n}: run `amp-braze reshard` to split "
            "it again (it sends nothing; docs/scale.md), or set scale.shards back to "
            f"{recorded.get('shards')}."
        )
