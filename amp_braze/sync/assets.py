"""Per sync: braze_sync_plan (the delta), braze_sync (sends it) and its rejections, and its own
query's result when it has one, all in the sync's group under the sync's names."""

import tempfile
from pathlib import Path

import dagster as dg

from amp_braze.braze.client import AuthError, BrazeError
from amp_braze.braze.identifiers import ID
from amp_braze.catalogue import MEMBERSHIPS, SYNC, SYNC_PLAN, SYNC_REJECTIONS
from amp_braze.config import Config, SyncSpec
from amp_braze.metadata import StepCost, rows_table, stage_seconds, table_metadata
from amp_braze.profiles.assets import attributes_assets
from amp_braze.resources import StorageResource, shard_partitions
from amp_braze.shard_figures import over_shards
from amp_braze.shards import LayoutChanged, check_layout
from amp_braze.storage import Storage
from amp_braze.sync import subscriptions as subscription
from amp_braze.sync.lease import LeaseLost, LeaseTimeout
from amp_braze.sync.run import load_plan, make_plan, run_sync, save_plan, write_dry_run
from amp_braze.sync.state import StateMovedError


class SyncRunConfig(dg.Config):
    dry_run: bool = False  # write the planned requests as JSON lines instead of sending them


# What the UI shows as one figure, added up over the shards (amp_braze.shard_figures).
PLAN_FIGURES = ["dagster/row_count", "users_changed", "estimated_data_points", "requests_needed",
                "users_in_state"]  # fmt: skip
SYNC_FIGURES = ["users_sent", "data_points", "requests", "rejected_rows", "failed_rows"]


def _plan_metadata(stats: dict) -> dict:
    full = stats["full_sync_data_points"]
    saved = 1 - stats["data_points"] / full if full else 0.0
    meta = {
        "users_changed": dg.MetadataValue.int(stats["users_changed"]),
        "new_users": dg.MetadataValue.int(stats["new_users"]),
        "attributes_changed": dg.MetadataValue.int(stats["attributes_changed"]),
        "estimated_data_points": dg.MetadataValue.int(stats["data_points"]),
        "requests_needed": dg.MetadataValue.int(stats["requests"]),
        "full_sync_data_points": dg.MetadataValue.int(full),
        "full_sync_requests": dg.MetadataValue.int(stats["full_sync_requests"]),
        "data_points_saved_share": dg.MetadataValue.float(round(saved, 4)),
        "state_version": dg.MetadataValue.int(stats.get("state_version", 0)),
        "users_in_state": dg.MetadataValue.int(stats.get("state_users", 0)),
        # Users Braze has from us who are no longer wanted: unset or left as they are, per
        # braze.on_removed_user.
        "users_no_longer_wanted": dg.MetadataValue.int(stats.get("users_no_longer_wanted", 0)),
        **_subscription_metadata(stats.get("subscription_changes"), stats),
        "attributes_changed_by_column": rows_table(
            [
                {"attribute": k, "users": v}
                for k, v in sorted(
                    stats["attributes_changed_by_column"].items(), key=lambda kv: -kv[1]
                )
            ]
        ),
    }
    return meta


def _subscription_metadata(changes: dict | None, stats: dict) -> dict:
    """Per subscription group, the users to subscribe and unsubscribe (planned, or accepted);
    nothing for a sync without groups."""
    if not changes:
        return {}
    rows = [{"group": g, **n} for g, n in sorted(changes.items())]
    meta = {
        "subscription_changes": rows_table(rows),
        "subscription_requests": dg.MetadataValue.int(stats.get("subscription_requests", 0)),
    }
    if "subscription_rejections" in stats:
        meta["subscription_rejections"] = dg.MetadataValue.int(stats["subscription_rejections"])
        sample = stats.get("subscription_rejected_sample") or []
        meta["subscription_rejected_sample"] = rows_table(
            [{"identifier": r[ID], **{k: v for k, v in r.items() if k != ID}} for r in sample]
        )
    return meta


def sync_storage(
    context: dg.AssetExecutionContext, storage: StorageResource, cfg: Config
) -> Storage:
    """The storage a plan or a sync works in (its shard's), once its layout is the configured one."""
    store = storage.for_run(context)
    try:
        check_layout(store.shared, cfg.scale.shards)
    except LayoutChanged as e:
        raise dg.Failure(description=str(e), allow_retries=False) from None
    return store


def sync_asset_key(spec: SyncSpec, name: str) -> dg.AssetKey:
    """The key of one of a sync's assets (its names say where they sit)."""
    return dg.AssetKey(spec.names.key(name))


def sync_assets(cfg: Config, spec: SyncSpec) -> list:
    """One sync's assets: its plan, its send and rejections, and its own query's result."""
    names = paths = spec.names
    shards = shard_partitions(cfg.scale.shards)
    pool, workspace, group = names.pool, names.workspace, names.group
    b = cfg.destination_of(spec)
    kind = "a campaign" if spec.audience else "an orchestration"
    what = f"sync {spec.name!r} ({kind}) to destination {spec.destination!r}"
    own: list = []
    plan_deps = [dg.AssetKey(MEMBERSHIPS)]  # which reads braze_customer_attributes
    plan_key, sync_key = sync_asset_key(spec, SYNC_PLAN), sync_asset_key(spec, SYNC)
    if spec.sql is not None:
        own = [
            attributes_assets(
                cfg,
                sql_key=f"syncs.{spec.name}.sql",
                sql=spec.sql,
                braze=b,
                keys=(names.attributes.split("/"), names.field_rejections.split("/")),
                group=group,
            )
        ]
        plan_deps.append(dg.AssetKey(names.attributes.split("/")))

    @dg.asset(
        key=sync_asset_key(spec, SYNC_PLAN),
        group_name=group,
        # Split in shards, each shard's plan reads only its own state: plans run side by side,
        # and only the sends share the destination's pool (and its lease).
        pool=pool if shards is None else None,
        deps=plan_deps,
        partitions_def=shards,
        kinds={"polars", "braze"},
        description=f"The delta of {what}: per user, only the attributes (and segment attributes) "
        "and subscription-group states whose value differs from what Braze last accepted (the "
        "sync state). Records the state version it was computed against.",
    )
    def braze_sync_plan(
        context: dg.AssetExecutionContext, storage: StorageResource
    ) -> dg.MaterializeResult:
        cost = StepCost(context)
        store = sync_storage(context, storage, cfg)
        plan = make_plan(cfg, store, spec)
        uri = save_plan(store, plan, paths)
        s = plan.stats
        context.log.info(
            f"plan: {s['users_changed']:,} users, {s['attributes_changed']:,} attributes, "
            f"{s['data_points']:,} data points (a full sync: {s['full_sync_data_points']:,})"
        )
        meta = table_metadata(plan.table, uri) | _plan_metadata(s)
        meta |= over_shards(context, store.shared, cfg.scale.shards, plan_key, meta, PLAN_FIGURES)
        return dg.MaterializeResult(metadata=meta | cost.metadata())

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                sync_asset_key(spec, SYNC),
                group_name=group,
                deps=[braze_sync_plan],
                kinds={"braze"},
                description=f"Sends the plan of {what} to Braze's /users/track (and its "
                "subscription-group states to /v2/subscription/status/set) and commits its "
                "sync state for accepted rows; rows Braze rejects go to braze_sync_rejections "
                "and are retried by the next sync.",
            ),
            dg.AssetSpec(
                sync_asset_key(spec, SYNC_REJECTIONS),
                group_name=group,
                deps=[braze_sync_plan],
                kinds={"polars"},
                skippable=True,  # a dry run sends nothing, so it rejects nothing either
                description="Rows Braze refused in the last sync, with Braze's reason; not in "
                "the sync state, so the next sync sends them again.",
            ),
        ],
        name=names.sync_step,
        pool=pool,
        partitions_def=shards,
        required_resource_keys={"storage", workspace},
    )
    def braze_sync(context: dg.AssetExecutionContext, config: SyncRunConfig):
        # Both resources by key: the workspace differs per destination.
        cost = StepCost(context)
        store = sync_storage(context, context.resources.storage, cfg)
        plan = load_plan(store, paths)
        if config.dry_run:
            name = f"{paths.dry_runs}/{context.run.run_id}.jsonl"
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "requests.jsonl"
                n_req, n_obj = write_dry_run(plan, cfg, path, spec)
                store.write_bytes(name, path.read_bytes())
                more = {}
                if plan.subscriptions:  # their bodies in a file of their own
                    subs = f"{paths.dry_runs}/{context.run.run_id}.subscriptions.jsonl"
                    n_sub, n_ids = subscription.write_requests(plan.table, plan.subscriptions, path)
                    store.write_bytes(subs, path.read_bytes())
                    more = {
                        "subscription_requests": dg.MetadataValue.int(n_sub),
                        "subscription_ids": dg.MetadataValue.int(n_ids),
                        "subscription_requests_file": dg.MetadataValue.path(store.uri(subs)),
                    }
            context.log.info(
                f"dry run: {n_req:,} requests with {n_obj:,} objects written to {store.uri(name)}"
            )
            yield dg.MaterializeResult(
                asset_key=sync_asset_key(spec, SYNC),
                metadata={
                    "dry_run": True,
                    "requests": dg.MetadataValue.int(n_req),
                    "users": dg.MetadataValue.int(n_obj),
                    "estimated_data_points": dg.MetadataValue.int(plan.stats["data_points"]),
                    "requests_file": dg.MetadataValue.path(store.uri(name)),
                    **more,
                },
            )
            return
        try:
            braze = getattr(context.resources, workspace)
            report = run_sync(cfg, store, plan, context.run.run_id, spec, braze)
        except AuthError as e:
            raise dg.Failure(description=str(e), allow_retries=False) from None
        except (BrazeError, LeaseTimeout, LeaseLost, StateMovedError) as e:
            raise dg.Failure(description=str(e)) from None
        st = report.stats
        rej = report.rejected
        meta = {
            "users_sent": dg.MetadataValue.int(report.users_sent),
            "attributes_sent": dg.MetadataValue.int(report.attributes_sent),
            "data_points": dg.MetadataValue.int(report.data_points),
            "users_merged": dg.MetadataValue.int(report.users_merged),
            "users_renamed": dg.MetadataValue.int(report.users_renamed),
            "requests": dg.MetadataValue.int(st.requests),
            "rate_limited_429s": dg.MetadataValue.int(st.rate_limited),
            "retries": dg.MetadataValue.int(st.retries),
            "split_batches": dg.MetadataValue.int(st.split_batches),
            "rejected_rows": dg.MetadataValue.int(rej.height),
            "failed_rows": dg.MetadataValue.int(st.failed),
            "retried_rows_from_last_run": dg.MetadataValue.int(report.retried_from_last_run),
            "checkpoints": dg.MetadataValue.int(report.checkpoints),
            "intents": dg.MetadataValue.int(report.intents),
            "lease_wait_seconds": dg.MetadataValue.float(round(report.lease_wait_seconds, 3)),
            "state_version": dg.MetadataValue.int(report.state_version),
            "old_state_versions_deleted": dg.MetadataValue.int(report.pruned[0]),
            "journal_entries_deleted": dg.MetadataValue.int(report.pruned[1]),
            "replanned": dg.MetadataValue.bool(report.replanned),
            "duration_seconds": dg.MetadataValue.float(round(report.duration, 3)),
            "seconds": stage_seconds(report.seconds),
            "requests_per_second": dg.MetadataValue.float(round(report.requests_per_second, 1)),
            "rejected_sample": rows_table(rej.rename({ID: "identifier"}).head(20).to_dicts()),
            **(
                _subscription_metadata(
                    report.subscriptions.by_group(report.plan.subscriptions),
                    {"subscription_requests": report.subscriptions.requests},
                )
                if report.plan.subscriptions
                else {}
            ),
            "rejections_table": dg.MetadataValue.path(
                store.uri(store.table_name(paths.rejections))
            ),
        }
        meta |= over_shards(context, store.shared, cfg.scale.shards, sync_key, meta, SYNC_FIGURES)
        context.log.info(
            f"sent {report.users_sent:,} users, {report.attributes_sent:,} attributes, {report.data_points:,} "
            f"data points in {st.requests:,} requests ({st.rate_limited} 429s, {st.retries} retries, "
            f"{rej.height} rejected) in {report.duration:.1f} s"
        )
        yield dg.MaterializeResult(
            asset_key=sync_asset_key(spec, SYNC_REJECTIONS),
            metadata=table_metadata(rej, store.uri(store.table_name(paths.rejections)))
            | {"retried_rows_from_last_run": dg.MetadataValue.int(report.retried_from_last_run)},
        )
        if st.failed:
            raise dg.Failure(
                description=f"{st.failed:,} rows could not be sent after {b.max_retries} retries "
                "(Braze kept failing); everything Braze accepted is recorded, and the next sync sends the rest.",
                metadata=meta,
            )
        yield dg.MaterializeResult(
            asset_key=sync_asset_key(spec, SYNC), metadata=meta | cost.metadata()
        )

    return [*own, braze_sync_plan, braze_sync]
