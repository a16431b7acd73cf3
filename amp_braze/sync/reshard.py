"""Changing the number of shards: every sync's state split again by the new shards, so the next
sync sends only what changed (docs/scale.md, "Changing the number of shards").

A state row belongs to the new shard whose attributes table holds its user, or whose field
rejections do (the shards' tables are built first, by ``amp-braze reshard``); a user no shard
wants any more (one Braze still has from an earlier sync) goes to the shard its identifier hashes
to, which treats it as it would have (``braze.on_removed_user``). Each row lands in exactly one shard. The old shards' folders are left
as they are; only the layout says which split is current.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from amp_braze.braze.identifiers import ID
from amp_braze.config import Config, SyncSpec
from amp_braze.shards import shard_names, shard_of, shard_stores
from amp_braze.storage import Storage
from amp_braze.sync.state import SyncState


@dataclass
class Resplit:
    sync: str
    users: int  # state rows, before and after (each in one shard)
    per_shard: dict[str, int]  # new shard -> its rows


def resplit_state(cfg: Config, shared: Storage, old: int, new: int) -> list[Resplit]:
    """Write every sync's state, as the ``old`` shards hold it now (pending journal entries
    folded in), as a new version in each of the ``new`` shards."""
    out = []
    for spec in cfg.syncs.values():
        out.append(_resplit(spec, shared, old, new))
    return out


def _resplit(spec: SyncSpec, shared: Storage, old: int, new: int) -> Resplit:
    key = spec.names.state_key
    views = [SyncState(s, key).current() for s in shard_stores(shared, old)]
    tables = [v.table for v in views if v.table.height]
    rows = (
        pl.concat(tables, how="diagonal_relaxed")
        if tables
        else pl.DataFrame({ID: pl.Series([], dtype=pl.String)})
    )
    targets = shard_stores(shared, new)
    wanted = pl.concat(
        [_held_ids(store, spec).with_columns(pl.lit(i, pl.UInt16).alias(_HOME))
         for i, store in enumerate(targets)]
    ).unique(ID, keep="first")  # fmt: skip
    homed = rows.join(wanted, on=ID, how="left", maintain_order="left")
    home = homed.get_column(_HOME).fill_null(shard_of(rows.get_column(ID), new))
    per_shard = {}
    names = shard_names(new) if new > 1 else ["root"]
    for i, (name, store) in enumerate(zip(names, targets, strict=True)):
        part = rows.filter(home == i).sort(ID)
        state = SyncState(store, key)
        version, man = state.manifests.newest()
        # Entries an earlier split left in this folder are older than the rows written here.
        folded = max(
            [int(man.get("folded_through", 0))] + [state.entry_seq(n) for n in state.journal()]
        )
        if not state.write_version(version + 1, part, folded):
            raise RuntimeError(
                f"another writer changed the sync state under {store.uri(state.base)}"
            )
        per_shard[name] = part.height
    return Resplit(spec.name, rows.height, per_shard)


_HOME = "__home"


def _held_ids(store: Storage, spec: SyncSpec) -> pl.DataFrame:
    """The users a shard's sync answers for: those its attributes hold, and those whose rows a
    field rule set aside there (kept as they are in Braze, never taken for users who left)."""
    ids = [store.scan_table(spec.names.attributes).select(ID).collect()]
    if store.table_exists(spec.names.field_rejections):
        rejected = store.scan_table(spec.names.field_rejections).select(ID).collect()
        ids.append(rejected.drop_nulls().cast({ID: pl.String}))
    return pl.concat(ids).unique(ID)
