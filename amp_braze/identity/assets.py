"""The ``identity_clusters`` asset: every feed record with its stable amp_id, and its guards."""

import dagster as dg
import polars as pl

from amp_braze.catalogue import CLUSTERS, PROFILES_GROUP, SOURCES, source_table
from amp_braze.config import Config, IdentityConfig
from amp_braze.identity.linkage import model_parameters
from amp_braze.identity.pieces import pieces_asset
from amp_braze.identity.resolve import MODEL, MODEL_RULE, Resolution, run
from amp_braze.metadata import rows_table, stage_seconds, table_metadata
from amp_braze.resources import StorageResource
from amp_braze.storage import Storage

KINDS = {"splink", "duckdb", "polars"}
_BANDS = ((0.999, "0.999+"), (0.99, "0.99-0.999"), (0.95, "0.95-0.99"), (0.0, "threshold-0.95"))
DESCRIPTIONS = {
    "source": "The feed the record comes from.",
    "record_id": "The record's id within its feed (the feed's record_id column).",
    "amp_id": "The person's stable id: what syncs send as Braze's external_id.",
    "cluster_size": "How many feed records share this amp_id.",
    "linked_by": "The record's strongest link inside its cluster: a deterministic rule's "
    "columns, or 'model' (Splink's match probability). Empty for a record alone.",
    "match_probability": "The probability of that link (1.0 for a deterministic rule).",
}


def _histogram(sizes: pl.Series) -> list[dict]:
    bins = (
        (1, "1"),
        (2, "2"),
        (3, "3"),
        (4, "4-5"),
        (6, "6-10"),
        (11, "11-100"),
        (101, "over 100"),
    )
    starts = pl.Series([b for b, _ in bins])
    which = starts.search_sorted(sizes, side="right") - 1  # the bin each size falls in
    counts = dict(which.value_counts().iter_rows())
    return [
        {"records in cluster": lab, "clusters": counts.get(i, 0)} for i, (_, lab) in enumerate(bins)
    ]


def _records_by_link(result: Resolution) -> list[dict]:
    """Records by their strongest link: each deterministic rule, the model by probability band,
    and records linked to nobody."""
    t = result.table
    rows = [
        {"linked by": f"rule: {rule}", "records": n}
        for rule, n in t.filter(pl.col("linked_by") != MODEL_RULE)
        .group_by("linked_by")
        .len()
        .sort("linked_by")
        .iter_rows()
    ]
    probs = t.filter(pl.col("linked_by") == MODEL_RULE).get_column("match_probability")
    for i, (low, label) in enumerate(_BANDS):
        high = _BANDS[i - 1][0] if i else 1.01
        n = int(((probs >= low) & (probs < high)).sum())
        rows.append({"linked by": f"model, probability {label}", "records": n})
    rows.append({"linked by": "nobody (alone)", "records": t["linked_by"].null_count()})
    return rows


def identity_assets(cfg: Config) -> list[dg.AssetsDefinition]:
    ident = cfg.identity
    assert ident is not None
    deps = [dg.AssetKey([SOURCES, name]) for name in cfg.profile_sources]
    key = dg.AssetKey(CLUSTERS)
    checks = [
        dg.AssetCheckSpec(
            "cluster_size",
            asset=key,
            description=f"Warns when a cluster grew past identity.max_cluster_size "
            f"({ident.max_cluster_size}) and had to be split.",
        ),
        dg.AssetCheckSpec(
            "junk_values",
            asset=key,
            description=f"Warns when an identifying value (email, phone, id) is shared by more "
            f"than identity.max_records_per_value ({ident.max_records_per_value}) records: such a "
            "value links nobody.",
        ),
    ]

    def read_feeds(store: Storage) -> dict:
        return {
            name: (src, store.scan_table(source_table(name)))
            for name, src in cfg.profile_sources.items()
        }

    def outcome(context, store: Storage, result: Resolution, version: int, uri: str) -> list:
        """The materialization's metadata and check results, however many steps made it."""
        _warn(context, result)
        return [_metadata(store, result, version, uri), _checks(key, ident, result)]

    description = (
        "Every feed record with the stable amp_id of the person it belongs to: normalised, "
        "linked by the deterministic rules and Splink's model (match probability at or above "
        f"{ident.threshold}), clustered; ids survive growth, merges keep the older id."
    )
    if ident.score_chunks > 1:  # a step per piece of the scoring: any worker runs each

        def steps(context, store, result, version, uri):
            meta, results = outcome(context, store, result, version, uri)
            yield dg.Output(None, output_name="result", metadata=meta)
            yield from results

        return [
            pieces_asset(
                cfg,
                key,
                deps,
                read_feeds,
                steps,
                checks,
                group_name=PROFILES_GROUP,
                descriptions_by_output_name={"result": description},
                tags_by_output_name={"result": {f"dagster/kind/{k}": "" for k in KINDS}},
            )
        ]

    @dg.asset(
        key=key,
        group_name=PROFILES_GROUP,
        deps=deps,
        kinds=KINDS,
        check_specs=checks,
        description=description,
    )
    def identity_clusters(context: dg.AssetExecutionContext, storage: StorageResource):
        store = storage.get()
        result, version, uri = run(cfg, store, read_feeds(store))
        meta, check_results = outcome(context, store, result, version, uri)
        yield dg.MaterializeResult(metadata=meta, check_results=check_results)

    return [identity_clusters]


def _neutral_levels(result: Resolution) -> list[dict]:
    return [f for f in result.training.get("fallbacks", []) if f["parameter"] == "m"]


def _fallback_rows(result: Resolution) -> list[dict]:
    """What training could not estimate and what stands in for it (identity/training.py)."""
    return [
        {"field": f["field"] or "(model)", "level": f["level"], "parameter": f["parameter"],
         "reason": f["reason"]}
        for f in result.training.get("fallbacks", [])
    ]  # fmt: skip


def _metadata(store: Storage, result: Resolution, version: int, uri: str) -> dict:
    a = result.assignment
    sizes = result.table.group_by("amp_id").len().get_column("len")
    meta = table_metadata(result.table, uri, DESCRIPTIONS)
    meta |= {
        "records": dg.MetadataValue.int(result.table.height),
        "clusters": dg.MetadataValue.int(sizes.len()),
        "largest_cluster": dg.MetadataValue.int(int(sizes.max() or 0)),
        "mapping_version": dg.MetadataValue.int(version),
        **{k: dg.MetadataValue.int(v) for k, v in a.stats.items()},
        "cluster_sizes": rows_table(_histogram(sizes)),
        "records_by_link": rows_table(_records_by_link(result)),
        "deterministic_links": dg.MetadataValue.int(result.deterministic_links),
        "model_links": dg.MetadataValue.int(result.model_links),
        "records_without_id": dg.MetadataValue.int(sum(result.records.without_id.values())),
        "repeated_record_ids": dg.MetadataValue.int(sum(result.records.repeated_ids.values())),
        "model": dg.MetadataValue.path(store.uri(MODEL)),
        "model_trained_this_run": dg.MetadataValue.bool(result.trained),
        "model_parameters": rows_table(model_parameters(result.model, result.training)),
        "model_levels_neutral": dg.MetadataValue.int(len(_neutral_levels(result))),
        "model_fields_untrained": dg.MetadataValue.text(
            ", ".join(result.training.get("untrained", [])) or "none"
        ),
        "model_fallbacks": rows_table(_fallback_rows(result)),
        "seconds": stage_seconds(result.seconds),
    }
    return meta


def _warn(context: dg.OpExecutionContext, result: Resolution) -> None:
    for w in (f"{n} rows of {s} have no record id" for s, n in result.records.without_id.items()):
        context.log.warning(w)
    for name in result.training.get("untrained", []) if result.trained else []:
        context.log.warning(
            f"identity: the model could not be trained for {name!r} (too few matching "
            "pairs had it on both sides); it is left neutral and the other fields and the "
            "deterministic rules decide. See model_fallbacks."
        )


def _checks(
    key: dg.AssetKey, ident: IdentityConfig, result: Resolution
) -> list[dg.AssetCheckResult]:
    over = result.clustered.oversized
    junk = result.records.junk
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name="cluster_size",
            passed=over.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "oversized_clusters": dg.MetadataValue.int(over.height),
                "max_cluster_size": dg.MetadataValue.int(ident.max_cluster_size),
                "largest_before_split": dg.MetadataValue.int(
                    int(over.get_column("records").max() or 0) if over.height else 0
                ),
            },
            description=None
            if over.height == 0
            else f"{over.height} cluster(s) had more than {ident.max_cluster_size} records "
            "and were split on their strongest links; look for a shared value or a "
            "weak blocking rule.",
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="junk_values",
            passed=junk.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "junk_values": dg.MetadataValue.int(junk.height),
                "values": rows_table(junk.head(20).to_dicts()),
            },
            description=None
            if junk.height == 0
            else f"{junk.height} value(s) are shared by too many records to name one "
            f"person (e.g. {junk.row(0)[0]} = {junk.row(0)[1]!r}, {junk.row(0)[2]} "
            "records); they link nobody. Add them to identity.junk_values to say so.",
        ),
    ]
