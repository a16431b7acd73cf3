"""Figures the Dagster UI shows as one number (rows, segment sizes, data points), added up over
the shards. A partitioned asset's page shows the latest materialization, one shard's: each shard
therefore records its figures in a file only it writes (``shards/<N>/figures/<asset>/<shard>.json``
in the storage root), and every shard's materialization reports, beside its own figures, the sum of
every shard's latest ones (``all_shards_<figure>``) and a table of them per shard.

The runs one feeds run starts (its sensor's, or ``amp-braze plan``'s) carry its run id as their
round (``ROUND_TAG``): ``shards_in_this_round`` says how many shards' latest figures come from
the same round, so the sum is that round's total once it reaches N.
"""

from __future__ import annotations

import dagster as dg

from amp_braze.metadata import rows_table
from amp_braze.storage import Storage

ROUND_TAG = "amp_braze/round"  # on a shard's run: the feeds run whose data it reads
_NAMES = {"dagster/row_count": "rows"}  # a figure's name when it is not the entry's own


def over_shards(
    context: dg.AssetExecutionContext,
    shared: Storage,
    n: int,
    asset: dg.AssetKey,
    meta: dict[str, dg.MetadataValue],
    figures: list[str],
) -> dict[str, dg.MetadataValue]:
    """Record the ``figures`` (names of integer entries of ``meta``) of this shard's ``asset``
    and return the metadata of every shard's latest ones added up (nothing when not split)."""
    if not context.has_partition_key:
        return {}
    mine = {_NAMES.get(k, k): int(meta[k].value) for k in figures}
    shard, round_id = context.partition_key, context.run.tags.get(ROUND_TAG, "")
    folder = f"shards/{n}/figures/{asset.to_user_string()}"
    shared.write_json(f"{folder}/{shard}.json", {"round": round_id, "figures": mine})
    latest = {
        name.rsplit("/", 1)[1].removesuffix(".json"): shared.read_json(name, default={})
        for name in sorted(shared.list(folder))
        if name.endswith(".json")
    }
    meta: dict[str, dg.MetadataValue] = {
        f"all_shards_{k}": dg.MetadataValue.int(
            sum(int(v.get("figures", {}).get(k, 0)) for v in latest.values())
        )
        for k in mine
    }
    meta["shards_reported"] = dg.MetadataValue.text(f"{len(latest)} of {n}")
    if round_id:
        same = sum(1 for v in latest.values() if v.get("round") == round_id)
        meta["shards_in_this_round"] = dg.MetadataValue.int(same)
    meta["per_shard"] = rows_table(
        [{"shard": s, **v.get("figures", {})} for s, v in latest.items()]
    )
    return meta
