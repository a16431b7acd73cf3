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
from amp_braze.identity import linkage
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


@dataclass
class Prepared:
    """What scoring needs and what comes before it: the normalised records, the model (trained
    or stored), the deterministic links, and which records changed (None: score every pair)."""

    records: Records
    model: dict[str, Any]
    trained: bool
    training: dict[str, Any]
    rules: pl.DataFrame
    changed: pl.Series | None
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
    prepared = prepare_links(feeds, cfg, previous, model, previous_links, training_report)
    lap = Laps()
    if prepared.changed is None:
        scored = linkage.score(prepared.records.table, cfg, prepared.model)
    else:
        scored = score_changed(prepared, cfg, previous_links)
    lap("predict")
    prepared.seconds |= lap.seconds
    return finish(prepared, cfg, previous, next_id, scored)


def prepare_links(
    feeds: dict[str, tuple[SourceConfig, pl.LazyFrame]],
    cfg: IdentityConfig,
    previous: pl.DataFrame,
    model: dict[str, Any] | None,
    previous_links: pl.DataFrame | None,
    training_report: dict[str, Any] | None,
) -> Prepared:
    """Normalise the records, train the model unless one is stored, link by the rules, and find
    the records whose identity values changed since the previous run."""
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
        from amp_braze.identity import training  # numpy and Splink: only when training

        fitted = training.train(records.table, cfg)
        model, training_report = fitted.model, fitted.report()
        lap("train")
    rules = linkage.deterministic_edges(records.table, cfg)
    recs = records.table
    changed = _changed(recs, previous) if previous_links is not None and not trained else None
    return Prepared(
        records, model, trained, training_report or {}, rules, changed, seconds=lap.seconds
    )


def score_changed(
    prepared: Prepared, cfg: IdentityConfig, previous_links: pl.DataFrame
) -> pl.DataFrame:
    """The previous run's links between unchanged records, and the changed records scored."""
    recs, changed = prepared.records.table, prepared.changed
    assert changed is not None
    kept = _links_to_ids(previous_links, recs.filter(~changed))
    fresh = linkage.score_changed(recs, changed, cfg, prepared.model) if changed.any() else None
    return pl.concat([kept] + ([fresh.select(kept.columns)] if fresh is not None else []))


def finish(
    prepared: Prepared,
    cfg: IdentityConfig,
    previous: pl.DataFrame,
    next_id: int,
    scored: pl.DataFrame,
) -> Resolution:
    """Cluster the rules' and the model's links (``scored``: unique_id_l, unique_id_r,
    match_probability) and give every record its stable amp_id."""
    lap = Laps()
    records, recs = prepared.records, prepared.records.table
    scored = scored.with_columns(pl.lit(MODEL_RULE).alias("rule"))
    rescored = recs.height if prepared.changed is None else int(prepared.changed.sum())
    rules = prepared.rules
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
        model=prepared.model,
        trained=prepared.trained,
        training=prepared.training,
        deterministic_links=rules.height,
        model_links=scored.height,
        links=_links_to_records(scored, recs),
        rescored_records=rescored,
        seconds=prepared.seconds | lap.seconds,
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
    cfg = identity_config(config)
    ids = IdMap(storage)
    version, previous, next_id = ids.current()
    model, report = stored_model(storage, cfg)
    result = resolve(feeds, cfg, previous, next_id, model, ids.links(version), report)
    return (result, *store(storage, cfg, ids, version, result))


def identity_config(config: Config) -> IdentityConfig:
    if config.identity is None:
        raise IdentityError("identity: is not configured")
    return config.identity


def store(
    storage: Storage, cfg: IdentityConfig, ids: IdMap, version: int, result: Resolution
) -> tuple[int, str]:
    """Store a resolution made from mapping ``version``: the model (when trained), the mapping's
    next version and the table; returns that version and the table's URI."""
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
    return version + 1, uri
