"""Which records are the same person: Splink's Fellegi-Sunter model beside deterministic rules.

The model (comparisons and blocking) is built from ``identity:`` alone, with nothing specific to
DuckDB, so the same settings and the same trained model (a JSON document) run on Splink's Spark
backend: only ``database_api()`` changes. The model is trained without labels
(``identity/training.py``) and stored, so later runs score with the same parameters and links do not
move merely because the model was retrained.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import polars as pl

from amp_braze.config import IdentityConfig
from amp_braze.identity.standardize import CANONICAL_SUFFIX

SPLINK_ROW_ID = "unique_id"  # Splink's record id column: an integer row number of the records table
FREQUENCY_KINDS = ("name", "email")  # exact matches weighted by how common the value is
MODEL_VERSION = 1

logging.getLogger("splink").setLevel(logging.WARNING)


def database_api() -> Any:
    """The engine Splink runs on. On a Spark cluster: ``SparkAPI(spark_session=spark)``."""
    from splink import DuckDBAPI

    return DuckDBAPI()


def _comparison(column: str, kind: str, other_name: str | None = None) -> Any:
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    def levels(*extra: Any) -> Any:
        exact = cll.ExactMatchLevel(column, term_frequency_adjustments=kind in FREQUENCY_KINDS)
        return cl.CustomComparison(
            output_column_name=column,
            comparison_levels=[cll.NullLevel(column), exact, *extra, cll.ElseLevel()],
        )

    if kind == "name":
        canonical = column + CANONICAL_SUFFIX
        swapped = (
            [cll.CustomLevel(f'"{column}_l" = "{other_name}_r"', "swapped with " + other_name)]
            if other_name
            else []
        )
        return levels(
            cll.ExactMatchLevel(canonical).configure(label_for_charts="same name after nicknames"),
            *swapped,
            cll.JaroWinklerLevel(column, 0.92),
            cll.JaroWinklerLevel(column, 0.8),
        )
    if kind == "email":
        # No fuzzy level: jane.doe7@ and jane.doe75@ are different people.
        return levels(
            cll.ExactMatchLevel(_user_name(column)).configure(label_for_charts="same user name"),
        )
    if kind == "date":
        return levels(
            cll.DamerauLevenshteinLevel(column, 1),
            cll.AbsoluteDateDifferenceLevel(
                column, input_is_string=True, threshold=1, metric="year"
            ),
        )
    if kind == "phone":
        return levels(cll.DamerauLevenshteinLevel(column, 1))
    if kind == "postcode":
        return levels(
            cll.LevenshteinLevel(column, 1),
            cll.CustomLevel(
                f"substr({column}_l, 1, 3) = substr({column}_r, 1, 3)", "same postcode area"
            ),
        )
    if kind == "address":
        return levels(cll.JaroWinklerLevel(column, 0.9), cll.JaroWinklerLevel(column, 0.75))
    if kind == "id":
        return levels(cll.DamerauLevenshteinLevel(column, 1))
    if kind == "text":
        return levels(cll.JaroWinklerLevel(column, 0.9))
    return levels()  # exact


def _user_name(column: str) -> Any:
    """The part of an email address before the @."""
    from splink import ColumnExpression

    return ColumnExpression(column).regex_extract("^[^@]+")


def settings(
    cfg: IdentityConfig,
    blocking: list[tuple[str, ...]] | None = None,
    retain_intermediate: bool = False,
) -> Any:
    """Splink settings for ``identity:``: one comparison per field, its blocking rules (or
    ``blocking``); ``retain_intermediate`` keeps each pair's comparison vector (for training)."""
    from splink import SettingsCreator, block_on

    rules = cfg.blocking if blocking is None else blocking
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=SPLINK_ROW_ID,
        comparisons=[
            _comparison(col, kind, other_name(cfg, col)) for col, kind in cfg.fields.items()
        ],
        blocking_rules_to_generate_predictions=[block_on(*rule) for rule in rules],
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=retain_intermediate,
    )


def other_name(cfg: IdentityConfig, column: str) -> str | None:
    """With exactly two name fields (given and family), a record may hold them swapped."""
    names = [c for c, k in cfg.fields.items() if k == "name"]
    return next((n for n in names if n != column), None) if len(names) == 2 else None


def model_fingerprint(cfg: IdentityConfig) -> str:
    """What a stored model was trained for; a change of fields or blocking retrains it."""
    basis = json.dumps([MODEL_VERSION, cfg.fields, cfg.blocking], sort_keys=True)
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def _links(predictions: Any) -> pl.DataFrame:
    """Splink's scored pairs as unique_id_l, unique_id_r, match_probability."""
    cols = f"{SPLINK_ROW_ID}_l, {SPLINK_ROW_ID}_r, match_probability"
    edges = pl.from_arrow(predictions.as_duckdbpyrelation().select(cols).to_arrow_table())
    assert isinstance(edges, pl.DataFrame)
    return edges


def _term_frequencies(linker: Any, cfg: IdentityConfig) -> None:
    """How common each name and email value is, over all the linker's records."""
    for col, kind in cfg.fields.items():
        if kind in FREQUENCY_KINDS:
            linker.table_management.compute_tf_table(col)


def score(records: pl.DataFrame, cfg: IdentityConfig, model: dict[str, Any]) -> pl.DataFrame:
    """Every blocked pair at or above the threshold, scored by the stored model: unique_id_l,
    unique_id_r, match_probability. With ``score_chunks`` N > 1, in N x N pieces: a pair's left
    record falls in one of N chunks and its right record in one of N, so the pieces together
    score each pair exactly once."""
    from splink import Linker

    db = database_api()
    linker = Linker(db.register(records.to_arrow()), model, log_level=logging.ERROR)
    n = cfg.score_chunks
    if n == 1:
        return _links(
            linker.inference.predict(
                threshold_match_probability=cfg.threshold, warning_mode="never"
            )
        )
    _term_frequencies(linker, cfg)  # once, not once per piece
    return pl.concat(_piece(linker, cfg, left, right) for left in range(n) for right in range(n))


def _piece(linker: Any, cfg: IdentityConfig, left: int, right: int) -> pl.DataFrame:
    """The pairs of piece (left, right) of score_chunks x score_chunks (from 0)."""
    n = cfg.score_chunks
    scored = linker.inference.predict_chunk(
        left_chunk=(left + 1, n),
        right_chunk=(right + 1, n),
        threshold_match_probability=cfg.threshold,
        warning_mode="never",
    )
    links = _links(scored)
    scored.drop_table_from_database_and_remove_from_cache()
    return links


def score_piece(
    records: Path, cfg: IdentityConfig, model: dict[str, Any], left: int, right: int
) -> pl.DataFrame:
    """One piece of ``score`` in pieces, on its own (a step of its own): the same pairs, names
    and emails weighted by their frequency in all records as the whole scoring weighs them.

    ``records`` is the prepared records' Parquet file, which DuckDB reads itself, only the columns
    the model compares: the records are never held in Python, so a piece step's memory is
    DuckDB's working set (the records with their frequencies, and the piece's pairs)."""
    from splink import Linker

    db = database_api()
    columns = ", ".join(f'"{c}"' for c in model_columns(cfg))
    where = str(records).replace("'", "''")
    db.duckdb_con.execute(
        f"CREATE VIEW amp_records AS SELECT {columns} FROM read_parquet('{where}')"
    )
    linker = Linker(db.register("amp_records"), model, log_level=logging.ERROR)
    _term_frequencies(linker, cfg)
    return _piece(linker, cfg, left, right)


def model_columns(cfg: IdentityConfig) -> list[str]:
    """The records' columns Splink reads: the row id, every identity column (compared, blocked
    on or used by a rule) and the canonical form of each name."""
    canonical = [c + CANONICAL_SUFFIX for c, kind in cfg.fields.items() if kind == "name"]
    return [SPLINK_ROW_ID, *cfg.columns, *canonical]


def score_changed(
    records: pl.DataFrame, changed: pl.Series, cfg: IdentityConfig, model: dict[str, Any]
) -> pl.DataFrame:
    """Pairs at or above the threshold that involve a changed (or new) record: changed records
    against the rest (``predict_between``) and among themselves (``predict_within``). Names and
    emails are weighted by their frequency in all records, as a full scoring weighs them."""
    from splink import Linker

    db = database_api()
    linker = Linker(db.register(records.to_arrow()), model, log_level=logging.ERROR)
    _term_frequencies(linker, cfg)
    mine = records.filter(changed)
    rest = records.filter(~changed)
    mine_df = db.register(mine.to_arrow())
    parts = [
        linker.inference.predict_within(
            mine_df, threshold_match_probability=cfg.threshold, warning_mode="never"
        )
    ]
    if rest.height:
        parts.append(
            linker.inference.predict_between(
                mine_df,
                db.register(rest.to_arrow()),
                threshold_match_probability=cfg.threshold,
                warning_mode="never",
            )
        )
    return pl.concat([_links(p) for p in parts])


def deterministic_edges(records: pl.DataFrame, cfg: IdentityConfig) -> pl.DataFrame:
    """Records equal on every column of a rule are linked outright: each to its group's first."""
    parts = []
    for rule in cfg.deterministic:
        cols = list(rule)
        label = "+".join(cols)
        linked = (
            records.lazy()
            .select(SPLINK_ROW_ID, *cols)
            .drop_nulls(cols)
            .with_columns(pl.col(SPLINK_ROW_ID).min().over(cols).alias(f"{SPLINK_ROW_ID}_l"))
            .filter(pl.col(SPLINK_ROW_ID) != pl.col(f"{SPLINK_ROW_ID}_l"))
            .select(
                f"{SPLINK_ROW_ID}_l",
                pl.col(SPLINK_ROW_ID).alias(f"{SPLINK_ROW_ID}_r"),
                pl.lit(1.0).alias("match_probability"),
                pl.lit(label).alias("rule"),
            )
        )
        parts.append(linked)
    if not parts:
        return pl.DataFrame(
            schema={
                f"{SPLINK_ROW_ID}_l": pl.Int64,
                f"{SPLINK_ROW_ID}_r": pl.Int64,
                "match_probability": pl.Float64,
                "rule": pl.String,
            }
        )
    return pl.concat(parts).collect()


def model_parameters(
    model: dict[str, Any], training: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The trained model as rows a person can read: per comparison level, m, u, the weight, and
    whether training estimated m or held the level neutral (``training``: its report)."""
    import math

    neutral = {
        (f["field"], f["level"])
        for f in (training or {}).get("fallbacks", [])
        if f["parameter"] == "m"
    }
    untrained = set((training or {}).get("untrained", []))
    rows = []
    for comparison in model.get("comparisons", []):
        name = comparison.get("output_column_name")
        for level in comparison.get("comparison_levels", []):
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = math.log2(m / u) if m and u else None
            label = level.get("label_for_charts") or level.get("sql_condition")
            held = name in untrained or (name, label) in neutral
            rows.append(
                {
                    "field": name,
                    "level": label,
                    "m": f"{m:.3g}" if m is not None else None,
                    "u": f"{u:.3g}" if u is not None else None,
                    "match_weight": round(weight, 3) if weight is not None else None,
                    "m from": "neutral (m = u)" if held else "training" if training else "",
                }
            )
    return rows
