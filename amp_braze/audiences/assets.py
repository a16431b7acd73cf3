"""The audiences group: segment_memberships, with its size guard."""

import dagster as dg

from amp_braze.audiences.memberships import (
    GuardResult,
    check_rule_attributes,
    compute_memberships,
    membership_changes,
    sharded_size_guard,
    size_guard,
)
from amp_braze.braze.identifiers import id_footer
from amp_braze.catalogue import ATTRIBUTES, AUDIENCES_GROUP, MEMBERSHIPS
from amp_braze.config import Config
from amp_braze.metadata import StepCost, rows_table, table_metadata
from amp_braze.profiles.sql import base_tables, sql_upstream, table_assets
from amp_braze.resources import StorageResource, shard_partitions
from amp_braze.shard_figures import over_shards
from amp_braze.storage import Storage

BASELINE = "audiences/accepted_sizes.json"
SHARD_SIZES = "audiences/shards"  # per number of shards, one file per shard


class MembershipConfig(dg.Config):
    accept_segment_changes: bool = False  # let every segment's size move past its max_change once


def _sharded_guard(
    cfg: Config, shared: Storage, shard: str, sizes: dict[str, int], accept: bool
) -> GuardResult:
    """The whole segment's guard for one shard; records the shard's sizes (and, when it passes,
    accepts them) in a file only that shard writes."""
    n = cfg.scale.shards
    folder = f"{SHARD_SIZES}/{n}"
    files = {name.rsplit("/", 1)[1].removesuffix(".json"): name for name in shared.list(folder)}
    shards = {k: shared.read_json(name, default={}) for k, name in files.items()}
    result = sharded_size_guard(cfg, sizes, shard, shards, n, accept)
    mine = shards.get(shard, {})
    accepted = sizes if result.passed else mine.get("accepted", {})
    shared.write_json(f"{folder}/{shard}.json", {"accepted": accepted, "latest": sizes})
    return result


def audience_assets(cfg: Config) -> list[dg.AssetsDefinition]:
    guard = dg.AssetCheckSpec(
        "segment_size_guard",
        asset=MEMBERSHIPS,
        blocking=True,
        description="Fails (and stops the sync) when a segment shrinks or grows by more than its "
        "max_change since the last accepted sizes.",
    )

    # Rule segments and the memberships read the attributes; SQL segments may read more tables.
    upstream = [[ATTRIBUTES]]
    for seg in cfg.segments.values():
        for key in sql_upstream(seg.sql or "", table_assets(cfg)) if seg.sql else []:
            if key not in upstream:
                upstream.append(key)

    @dg.asset(
        name=MEMBERSHIPS,
        group_name=AUDIENCES_GROUP,
        deps=[dg.AssetKey(k) for k in upstream],
        kinds={"polars", "braze"},
        check_specs=[guard],
        partitions_def=shard_partitions(cfg.scale.shards),
        description="Every user's membership of every configured segment (SQL and rule segments, "
        "exclusions applied): one boolean column per segment.",
    )
    def segment_memberships(
        context: dg.AssetExecutionContext,
        config: MembershipConfig,
        storage: StorageResource,
    ) -> dg.MaterializeResult:
        cost = StepCost(context)
        store = storage.for_run(context)
        attributes = store.scan_table(ATTRIBUTES)
        check_rule_attributes(cfg, attributes.collect_schema())
        tables = base_tables(cfg, store, [s.sql for s in cfg.segments.values() if s.sql])
        memberships = compute_memberships(cfg, attributes, tables)
        segments = list(cfg.segments)
        before = store.read_table(MEMBERSHIPS) if store.table_exists(MEMBERSHIPS) else None
        changes = membership_changes(memberships, before, segments)
        accept = config.accept_segment_changes
        if context.has_partition_key:
            result = _sharded_guard(cfg, store.shared, context.partition_key, changes.sizes, accept)
            baseline = result.baseline
        else:
            baseline = store.read_json(BASELINE, default={})
            result = size_guard(cfg, changes.sizes, baseline, accept)
        uri = store.write_table(MEMBERSHIPS, memberships, id_footer(memberships))
        if result.passed and not context.has_partition_key:
            store.write_json(BASELINE, changes.sizes)
        meta = table_metadata(
            memberships,
            uri,
            {s: f"Member of segment {s} ({cfg.segments[s].description or 'see its definition'})."
             for s in segments},
        )  # fmt: skip
        for s in segments:
            meta[f"size_{s}"] = dg.MetadataValue.int(changes.sizes[s])
            meta[f"joiners_{s}"] = dg.MetadataValue.int(changes.joiners[s])
            meta[f"leavers_{s}"] = dg.MetadataValue.int(changes.leavers[s])
        meta["segments"] = rows_table(
            [
                {
                    "segment": s,
                    "kind": "sql" if cfg.segments[s].sql else "rules",
                    "members": changes.sizes[s],
                    "joiners": changes.joiners[s],
                    "leavers": changes.leavers[s],
                    "accepted size": baseline.get(s, "-"),
                    "excludes": ", ".join(cfg.segments[s].exclude) or "-",
                }
                for s in segments
            ]
        )
        figures = [f"{k}_{s}" for s in segments for k in ("size", "joiners", "leavers")]
        n = cfg.scale.shards
        meta |= over_shards(context, store.shared, n, dg.AssetKey(MEMBERSHIPS), meta, figures)
        for s in segments:
            context.log.info(
                f"segment {s}: {changes.sizes[s]:,} members (+{changes.joiners[s]:,} / -{changes.leavers[s]:,})"
            )
        return dg.MaterializeResult(
            metadata=meta | cost.metadata(),
            check_results=[
                dg.AssetCheckResult(
                    check_name="segment_size_guard",
                    passed=result.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description="; ".join(result.problems) or None,
                    metadata={
                        f"accepted_size_{s}": dg.MetadataValue.int(int(result.baseline.get(s, 0)))
                        for s in segments
                    },
                )
            ],
        )

    return [segment_memberships]
