"""Assets of the customer_360 group: one ``sources/<name>`` per feed, and ``customer_profiles``."""

from pathlib import Path

import dagster as dg
import polars as pl

from amp_braze.braze.identifiers import id_footer
from amp_braze.catalogue import (
    ATTRIBUTES,
    CLUSTERS,
    FIELD_REJECTIONS,
    PROFILES,
    PROFILES_GROUP,
    SOURCES,
    source_table,
)
from amp_braze.config import BrazeConfig, Config, SourceConfig
from amp_braze.metadata import (
    Laps,
    StepCost,
    rows_table,
    stage_seconds,
    stored_table_metadata,
    table_metadata,
)
from amp_braze.profiles.database_feed import read_database_feed
from amp_braze.profiles.databases import DatabaseError
from amp_braze.profiles.feed_split import shard_part, split_feed
from amp_braze.profiles.feeds import FeedError, feed_files, feed_fingerprint, read_feed
from amp_braze.profiles.incremental import (
    FINGERPRINT,
    attributes_from_changes,
    profiles_from_changes,
    write_profiles,
)
from amp_braze.profiles.sql import base_tables, run_sql, sql_upstream, table_assets
from amp_braze.profiles.unify import shard_feeds, with_amp_ids
from amp_braze.resources import StorageResource, shard_partitions
from amp_braze.shard_figures import over_shards
from amp_braze.storage import parts


def _split(context: dg.AssetExecutionContext, store, src: SourceConfig, shards: int) -> dict:
    """Split the feed in its shards' parts (``shards`` 0: not split); its metadata."""
    if not shards:
        return {}
    lap = Laps()
    written = split_feed(store, src, shards)
    lap("split")
    if written:
        context.log.info(f"{src.name}: split in {shards} shards' parts")
    return {
        "split_in_shards": dg.MetadataValue.int(shards),
        "split_this_run": dg.MetadataValue.bool(bool(written)),
        "split_seconds": dg.MetadataValue.float(round(lap.seconds["split"], 3)),
    }


def _database_asset(src: SourceConfig, shards: int) -> dg.AssetsDefinition:
    uri = src.database
    what = f"table {src.table}" if src.table else "query"

    @dg.asset(
        key=dg.AssetKey([SOURCES, src.name]),
        group_name=PROFILES_GROUP,
        kinds={"polars", "parquet", uri.kind},
        deps=[dg.AssetKey(k) for k in src.upstream_keys],
        description=(
            f"The {src.name} feed read from {uri.kind} ({what} at {uri.masked}), renamed and "
            "typed; with updated_at only the rows changed since the last read are read."
        ),
        metadata={
            "database": dg.MetadataValue.text(uri.kind),
            "database_uri": dg.MetadataValue.text(uri.masked),
            "table" if src.table else "query": dg.MetadataValue.text(src.table or src.query),
        },
    )
    def _feed(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        store = storage.get()
        table = source_table(src.name)
        try:
            done = read_database_feed(src, store, table)
        except (FeedError, DatabaseError) as e:
            raise dg.Failure(description=str(e)) from None
        snapshot = store.table_snapshot(table)
        meta = stored_table_metadata(snapshot.frame.collect_schema(), done.rows, done.uri)
        layout = parts.describe(snapshot.footer) or {}
        meta |= {k: dg.MetadataValue.int(v) for k, v in layout.items()}
        meta |= {k: dg.MetadataValue.int(v) for k, v in done.summary.items()}
        meta |= {
            "database": dg.MetadataValue.text(uri.kind),
            "table" if src.table else "query": dg.MetadataValue.text(src.table or src.query),
            "read": dg.MetadataValue.text(done.read),
            "read_reason": dg.MetadataValue.text(done.reason),
            "rows_read": dg.MetadataValue.int(done.rows_read),
            "rows_changed": dg.MetadataValue.int(done.rows_changed),
            "rows_deleted": dg.MetadataValue.int(done.rows_deleted),
            "cursor": dg.MetadataValue.text(done.cursor or "none"),
            "key_scan": dg.MetadataValue.bool(done.key_scan),
            "written": dg.MetadataValue.text(done.written),
            "seconds": stage_seconds({k: v for k, v in done.seconds.items() if k != "total"}),
        }
        meta |= _split(context, store, src, shards)
        context.log.info(
            f"{src.name}: {done.read} read of {uri.kind} {what}: {done.rows_read} rows read, "
            f"{done.rows_changed} changed, {done.rows_deleted} deleted; {done.rows} rows"
        )
        return dg.MaterializeResult(metadata=meta)

    return _feed


def _source_asset(src: SourceConfig, shards: int = 0) -> dg.AssetsDefinition:
    """A feed's asset; with ``shards`` it also writes each shard's part of it."""
    if src.is_database:
        return _database_asset(src, shards)

    @dg.asset(
        key=dg.AssetKey([SOURCES, src.name]),
        group_name=PROFILES_GROUP,
        kinds={"polars", "parquet", "s3" if src.is_s3 else "file"},
        description=f"The {src.name} feed ({src.format}) read from {src.path}, renamed and typed.",
    )
    def _feed(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        store = storage.get()
        table = source_table(src.name)
        files = feed_files(src)
        fingerprint = feed_fingerprint(src, files)
        stored = store.table_snapshot(table) if store.table_exists(table) else None
        footer = stored.footer if stored else {}
        if stored and fingerprint and footer.get("feed_fingerprint") == fingerprint:
            # The same files and configuration: the table already holds what reading would give.
            context.log.info(f"{src.name}: files unchanged since the last read; not read again")
            schema = stored.frame.collect_schema()
            uri = store.uri(store.table_name(table))
            return dg.MaterializeResult(
                metadata=stored_table_metadata(schema, footer["rows"], uri)
                | _feed_metadata(footer["feed_summary"], read=False)
                | _split(context, store, src, shards)
            )
        df = read_feed(src)
        key = pl.col(src.customer_key or src.record_id)
        # One pass (lazy: its distinct count is faster than the eager one).
        distinct, without_key = (
            df.lazy()
            .select(key.drop_nulls().n_unique().alias("n"), key.null_count().alias("z"))
            .collect()
            .row(0)
        )
        summary = {
            "files": len(files),
            "distinct_customers" if src.customer_key else "distinct_records": distinct,
            "rows_without_key": without_key,
            "duplicate_key_rows": df.height - without_key - distinct,
        }
        extra = {"feed_fingerprint": fingerprint, "feed_summary": summary} if fingerprint else None
        uri = store.write_table(table, df, extra)
        context.log.info(f"{src.name}: {df.height} rows from {len(files)} file(s)")
        split = _split(context, store, src, shards)
        return dg.MaterializeResult(
            metadata=table_metadata(df, uri) | _feed_metadata(summary, read=True) | split
        )

    return _feed


def _feed_metadata(summary: dict[str, int], read: bool) -> dict:
    return {k: dg.MetadataValue.int(v) for k, v in summary.items()} | {
        "read_this_run": dg.MetadataValue.bool(read)
    }


def _customer_profiles(cfg: Config) -> dg.AssetsDefinition:
    deps = [dg.AssetKey([SOURCES, name]) for name in cfg.profile_sources]
    if cfg.identity is not None:
        deps.append(dg.AssetKey(CLUSTERS))

    @dg.asset(
        name=PROFILES,
        group_name=PROFILES_GROUP,
        deps=deps,
        partitions_def=shard_partitions(cfg.scale.shards),
        kinds={"polars", "parquet"},
        description=(
            "One row per customer, unified across feeds: per field the newest non-null value wins "
            "(by each feed's updated_at), feed priority breaks ties."
        ),
    )
    def customer_profiles(
        context: dg.AssetExecutionContext, storage: StorageResource
    ) -> dg.MaterializeResult:
        cost = StepCost(context)
        store = storage.for_run(context)
        shared = store.shared  # the feeds and identity clusters, read by every shard
        # Each table read as one version, its rows and its write id together: a feed rewritten by
        # another run meanwhile must not be recorded as read when its older rows were.
        snaps = {name: shared.table_snapshot(source_table(name)) for name in cfg.profile_sources}
        srcs = cfg.profile_sources.items()
        feeds = {name: (src, snaps[name].frame) for name, src in srcs}
        split: list[str] = []  # the feeds read as this shard's parts of them
        if cfg.identity is not None:
            snaps[CLUSTERS] = shared.table_snapshot(CLUSTERS)
            feeds = with_amp_ids(feeds, snaps[CLUSTERS].frame)
        if context.has_partition_key and cfg.identity is None:  # the feeds' parts of this shard
            shard, n = context.partition_key, cfg.scale.shards
            own = {name: shard_part(snaps[name], store, src, shard, n) for name, src in srcs}
            feeds = {name: (src, own[name][0]) for name, src in srcs}
            split = [name for name, (_, from_part) in own.items() if from_part]
        elif context.has_partition_key:  # keys from identity: the feeds are not split
            feeds = shard_feeds(feeds, context.partition_key, cfg.scale.shards)
        versions = {name: snap.footer.get("write_id", "") for name, snap in snaps.items()}
        lap = Laps()
        built = profiles_from_changes(store, feeds, versions)
        lap("build")
        result = built.unified
        if built.unchanged:
            context.log.info("customer_profiles: no feed changed since the last build")
            uri = store.uri(store.table_name(PROFILES))
            schema = store.scan_table(PROFILES).collect_schema()
            meta = stored_table_metadata(schema, built.footer["rows"], uri)
        else:
            uri = write_profiles(store, built)
            lap("write")
            meta = table_metadata(result.profiles, uri)
        meta["customers_rebuilt"] = dg.MetadataValue.int(
            result.profiles.height if built.keys_rebuilt is None else built.keys_rebuilt
        )
        meta["rebuild"] = dg.MetadataValue.text(
            "full" if built.keys_rebuilt is None else "changed customers only"
        )
        for name, c in result.contribution.items():
            meta[f"customers_from_{name}"] = dg.MetadataValue.int(c["customers"])
            meta[f"fields_won_by_{name}"] = dg.MetadataValue.int(c["fields_won"])
        meta["rows_without_key"] = dg.MetadataValue.int(
            sum(c["rows_without_key"] for c in result.contribution.values())
        )
        meta["per_source"] = rows_table(
            [{"source": name, **c} for name, c in result.contribution.items()]
        )
        meta["customer_key"] = dg.MetadataValue.text(result.key)
        if context.has_partition_key:
            meta["feeds_read_as_shard_parts"] = dg.MetadataValue.text(", ".join(split) or "none")
        meta["seconds"] = stage_seconds(
            (built.seconds or {"build": lap.seconds["build"]})
            | {"write": lap.seconds.get("write", 0)}
        )
        context.log.info(f"customer_profiles: {meta['dagster/row_count'].value} customers")
        key, n = dg.AssetKey(PROFILES), cfg.scale.shards
        meta |= over_shards(context, shared, n, key, meta, ["dagster/row_count"])
        return dg.MaterializeResult(metadata=meta | cost.metadata())

    return customer_profiles


def _split_shards(cfg: Config, src: SourceConfig) -> int:
    """The shards a feed is split in as it is read (0: not split; amp_braze.profiles.feed_split)."""
    split = cfg.scale.shards > 1 and cfg.identity is None and src.name in cfg.profile_sources
    return cfg.scale.shards if split else 0


def profile_assets(cfg: Config) -> list[dg.AssetsDefinition]:
    """The feeds, customer_profiles and braze_customer_attributes (with its rejections)."""
    return [
        *(_source_asset(src, _split_shards(cfg, src)) for src in cfg.sources.values()),
        _customer_profiles(cfg),
        attributes_assets(cfg),
    ]


def attributes_assets(
    cfg: Config,
    sql_key: str = "profile_sql",
    sql: Path | None = None,
    braze: BrazeConfig | None = None,
    keys: tuple[list[str], list[str]] = ([ATTRIBUTES], [FIELD_REJECTIONS]),
    group: str = PROFILES_GROUP,
) -> dg.AssetsDefinition:
    """A query's result checked by Braze's field rules, and the rows it set aside: the profile SQL
    (braze_customer_attributes), or a sync's own ``sql`` (``<sync>/attributes``)."""
    sql_path = sql or cfg.profile_sql
    braze = braze or cfg.braze
    table, rejections = "/".join(keys[0]), "/".join(keys[1])
    check = dg.AssetCheckSpec(
        "rejected_share",
        asset=dg.AssetKey(keys[0]),
        blocking=True,
        description=f"Fails (and stops the sync) when more than {braze.max_rejected_share:.1%} "
        "of the rows break a Braze field rule.",
    )
    upstream = [dg.AssetKey(k) for k in sql_upstream(sql_path.read_text(), table_assets(cfg))]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                dg.AssetKey(keys[0]),
                group_name=group,
                deps=upstream,
                kinds={"polars", "sql", "braze"},
                description=(
                    f"The query in {sql_key} ({sql_path.name}) over the tables it reads (its "
                    "upstream assets); checked and normalised by Braze's field rules. Rows that "
                    f"break a rule go to {rejections}."
                ),
            ),
            dg.AssetSpec(
                dg.AssetKey(keys[1]),
                group_name=group,
                deps=upstream,
                kinds={"polars"},
                description=f"Rows of {sql_key} set aside by a Braze field rule (no identifier, "
                "duplicate identifier, invalid email, ...), with the rule and the value; they "
                "are never sent, and never treated as users who left.",
            ),
        ],
        check_specs=[check],
        name="_".join(keys[0]),
        partitions_def=shard_partitions(cfg.scale.shards),
    )
    def attributes(context: dg.AssetExecutionContext, storage: StorageResource):
        key = dg.AssetKey(keys[0])
        cost = StepCost(context)
        store = storage.for_run(context)
        sql = sql_path.read_text()
        tables = base_tables(cfg, store, [sql])
        previous = store.table_snapshot(table) if store.table_exists(table) else None
        rebuilt = attributes_from_changes(lambda: run_sql(sql, tables, sql_key), braze, previous)
        lap = Laps()
        result = rebuilt.attributes
        for w in result.warnings:
            context.log.warning(w)
        ordered = result.table  # sorted by the key: the planner lines it up with the sync state
        footer = id_footer(ordered) | {FINGERPRINT: rebuilt.fingerprint}
        uri = store.write_table(table, ordered, footer)
        rejections_uri = store.write_table(rejections, result.rejections)
        lap("write")
        by_rule = result.rejections.group_by("rule").len().sort("len", descending=True)
        meta = table_metadata(result.table, uri)
        meta |= {
            "input_rows": dg.MetadataValue.int(result.input_rows),
            "rejected_rows": dg.MetadataValue.int(result.rejected_rows),
            "rejected_share": dg.MetadataValue.float(round(result.rejected_share, 6)),
            "standard_fields": dg.MetadataValue.text(", ".join(result.standard_fields) or "-"),
            "custom_attributes": dg.MetadataValue.int(len(result.custom_attributes)),
            "rows_checked_this_run": dg.MetadataValue.int(rebuilt.rows_built),
            "seconds": stage_seconds(rebuilt.seconds | lap.seconds),
            "rejections_by_rule": rows_table(
                [{"rule": r, "rows": n} for r, n in by_rule.iter_rows()]
            ),
            "rejection_sample": rows_table(result.rejections.drop("__id").head(20).to_dicts()),
        }
        figures = ["dagster/row_count", "rejected_rows"]
        meta |= over_shards(context, store.shared, cfg.scale.shards, key, meta, figures)
        limit = braze.max_rejected_share
        passed = result.rejected_share <= limit
        yield dg.MaterializeResult(
            asset_key=dg.AssetKey(keys[1]),
            metadata=table_metadata(result.rejections, rejections_uri)
            | {"rejected_share": dg.MetadataValue.float(round(result.rejected_share, 6))},
        )
        yield dg.MaterializeResult(
            asset_key=dg.AssetKey(keys[0]),
            metadata=meta | cost.metadata(),
            check_results=[
                dg.AssetCheckResult(
                    check_name="rejected_share",
                    passed=passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={
                        "rejected_rows": dg.MetadataValue.int(result.rejected_rows),
                        "rejected_share": dg.MetadataValue.float(round(result.rejected_share, 6)),
                        "max_rejected_share": dg.MetadataValue.float(limit),
                    },
                    description=None
                    if passed
                    else f"{result.rejected_rows:,} of {result.input_rows:,} rows "
                    f"({result.rejected_share:.2%}) broke a field rule; the limit is "
                    f"max_rejected_share = {limit:.2%}. See {rejections}.",
                )
            ],
        )

    return attributes
