"""One identity run: normalise, link (rules and model), cluster, keep ids stable, store.

``resolve`` is the pure part (frames in, frames out); ``run`` adds storage: the stored model, the
previous mapping, and the new version of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from amp_braze.catalogue import CLUSTERS
from amp_braze.config import Config, IdentityConfig, SourceConfig
from amp_braze.identity import linkage, training
from amp_braze.identity.clusters import CLUSTER, Clustered, cluster
from amp_braze.identity.ids import AMP_ID, Assignment, IdMap, assign
from amp_braze.identity.linkage import SPLINK_ROW_ID
from amp_braze.identity.records import FINGERPRINT, RECORD, SOURCE, Records, prepare
from amp_braze.metadata import Laps
from amp_braze.storage import Storage

MODEL = "identity/model.json"
MODEL_RULE = "model"  # linked_by for a link the model scored


class IdentityError(ValueError):
    """Identity cannot run as configured; the message names the key."""


@dataclass
class Resolution:
    records: Records
    clustered: Clustered
    assignment: Assignment
    table: pl.DataFrame  # identity_clusters
    model: dict[str, Any]
    trained: bool
    training: dict[str, Any]  # what training could not estimate (training.Trained.report)
    deterministic_links: int
    model_links: int
    links: pl.DataFrame  # the model's links by record (ids.EDGE_SCHEMA), for the next run
    rescored_records: int  # records scored this run (all of them, unless only some changed)
    seconds: dict[str, float] = field(default_factory=dict)


def resolve(
    feeds: dict[str, tuple[SourceConfig, pl.LazyFrame]],
    cfg: IdentityConfig,
    previous: pl.DataFrame,
    next_id: int,
    model: dict[str, Any] | None = None,
    previous_links: pl.DataFrame | None = None,
    training_report: dict[str, Any] | None = None,
) -> Resolution:
    """Link, cluster and assign ids. With the previous run's fingerprints (in ``previous``), its
    model links and an unchanged model, only new or changed records are scored (against all the
    others): links between unchanged records are the previous run's."""
    lap = Laps()
    records, absent = prepare(feeds, cfg)
    if absent:
        col = sorted(absent)[0]
        raise IdentityError(
            f"identity: column {col!r} is in no feed (after renames); feeds have "
            + "; ".join(f"{n}: {', '.join(lf.collect_schema())}" for n, (_, lf) in feeds.items())
        )
    lap("normalise")
    trained = model is None
    if model is None:
        fitted = training.train(records.table, cfg)
        model, training_report = fitted.model, fitted.report()
        lap("train")
    rules = linkage.deterministic_edges(records.table, cfg)
    recs = records.table
    changed = _changed(recs, previous) if previous_links is not None and not trained else None
    if changed is None:
        scored = linkage.score(recs, cfg, model)
    else:
        kept = _links_to_ids(previous_links, recs.filter(~changed))
        fresh = linkage.score_changed(recs, changed, cfg, model) if changed.any() else None
        scored = pl.concat([kept] + ([fresh.select(kept.columns)] if fresh is not None else []))
    scored = scored.with_columns(pl.lit(MODEL_RULE).alias("rule"))
    rescored = recs.height if changed is None else int(changed.sum())
    lap("predict")
    edges = pl.concat([rules, scored.select(rules.columns)]).unique(
        [f"{SPLINK_ROW_ID}_l", f"{SPLINK_ROW_ID}_r"], keep="first", maintain_order=True
    )
    clustered = cluster(
        records.table.get_column(SPLINK_ROW_ID),
        edges,
        cfg.max_cluster_size,
        records.table.select(SPLINK_ROW_ID, SOURCE),
        cfg.one_record_per_person,
    )
    lap("cluster")
    labelled = records.table.select(SPLINK_ROW_ID, SOURCE, RECORD).join(
        clustered.clusters, on=SPLINK_ROW_ID
    )
    assignment = assign(labelled.select(SOURCE, RECORD, CLUSTER), previous, next_id)
    table = (
        labelled.join(assignment.mapping.select(SOURCE, RECORD, AMP_ID), on=[SOURCE, RECORD])
        .with_columns(pl.len().over(AMP_ID).alias("cluster_size"))
        .select(SOURCE, RECORD, AMP_ID, "cluster_size", "linked_by", "match_probability")
        .sort(SOURCE, RECORD)
    )
    lap("assign_ids")
    return Resolution(
        records=records,
        clustered=clustered,
        assignment=assignment,
        table=table,
        model=model,
        trained=trained,
        training=training_report or {},
        deterministic_links=rules.height,
        model_links=scored.height,
        links=_links_to_records(scored, recs),
        rescored_records=rescored,
        seconds=lap.seconds,
    )


def _changed(table: pl.DataFrame, previous: pl.DataFrame) -> pl.Series | None:
    """Per record (in table order), whether it is new or its identity values changed; None when
    the previous run stored no fingerprints (then everything is scored)."""
    if FINGERPRINT not in previous.columns:
        return None
    before = previous.select(SOURCE, RECORD, pl.col(FINGERPRINT).alias("__before"))
    joined = table.select(SOURCE, RECORD, FINGERPRINT).join(
        before, on=[SOURCE, RECORD], how="left", maintain_order="left"
    )
    return joined.select(
        pl.col("__before").is_null() | (pl.col("__before") != pl.col(FINGERPRINT))
    ).to_series()


def _relabel(
    links: pl.DataFrame, records: pl.DataFrame, old: list[str], new: list[str]
) -> pl.DataFrame:
    """Links whose two ends are named by ``old`` columns, named by ``new`` ones instead (both
    looked up in ``records``); a link to a record not in ``records`` is dropped."""
    for side in ("l", "r"):
        ends = records.select(*old, *new).rename({c: f"{c}_{side}" for c in old + new})
        links = links.join(ends, on=[f"{c}_{side}" for c in old])
    return links.select(*(f"{c}_{side}" for side in ("l", "r") for c in new), "match_probability")


def _links_to_ids(links: pl.DataFrame, unchanged: pl.DataFrame) -> pl.DataFrame:
    """The previous run's links between records that are still here, unchanged, as row ids."""
    return _relabel(links, unchanged, [SOURCE, RECORD], [SPLINK_ROW_ID])


def _links_to_records(scored: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """This run's model links by (source, record_id), which outlive row ids, for the next run."""
    return _relabel(scored, table, [SPLINK_ROW_ID], [SOURCE, RECORD])


def stored_model(
    storage: Storage, cfg: IdentityConfig
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The stored model and its training report, unless it was trained for other fields or
    blocking (or retrain is on)."""
    if cfg.retrain:
        return None, None
    doc = storage.read_json(MODEL)
    if not doc or doc.get("fingerprint") != linkage.model_fingerprint(cfg):
        return None, None
    return doc["model"], doc.get("training")


def run(config: Config, storage: Storage, feeds: dict[str, tuple[SourceConfig, pl.LazyFrame]]):
    """Resolve, then store the model (when trained), the mapping's new version and the table."""
    cfg = config.identity
    if cfg is None:
        raise IdentityError("identity: is not configured")
    ids = IdMap(storage)
    version, previous, next_id = ids.current()
    model, report = stored_model(storage, cfg)
    result = resolve(feeds, cfg, previous, next_id, model, ids.links(version), report)
    if result.trained:
        storage.write_bytes(
            MODEL,
            orjson.dumps(
                {
                    "fingerprint": linkage.model_fingerprint(cfg),
                    "model": result.model,
                    "training": result.training,
                },
                option=orjson.OPT_INDENT_2,
            ),
        )
    extra = {"seconds": result.seconds, "rescored_records": result.rescored_records}
    fingerprints = result.records.table.select(SOURCE, RECORD, FINGERPRINT)
    if not ids.write(version + 1, result.assignment, extra, fingerprints, result.links):
        raise IdentityError(
            f"another identity run stored version {version + 1} of the amp_id mapping under "
            f"{storage.uri('identity')} while this one ran; run identity_clusters again"
        )
    uri = storage.write_table(CLUSTERS, result.table)
    return result, version + 1, uri
