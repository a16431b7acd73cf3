"""The records identity compares: every feed row with a record id, its fields normalised.

One row per (source, record_id): when a feed repeats an id, the newest row (by the feed's
``updated_at``) speaks for it, and every row with that id gets its amp_id. A value of an identifying
field (email, phone, id) that more than ``max_records_per_value`` records share is junk, not a
person: it is nulled here so it links nobody, and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from amp_braze.config import IDENTIFYING_KINDS, IdentityConfig, SourceConfig
from amp_braze.identity import standardize
from amp_braze.identity.linkage import SPLINK_ROW_ID

SOURCE, RECORD = "source", "record_id"
FINGERPRINT = "fingerprint"  # a hash of a record's identity values: unchanged records keep links
_TS = "__updated_at"


@dataclass
class Records:
    table: pl.DataFrame  # unique_id, source, record_id, normalised fields
    without_id: dict[str, int]  # source -> rows without a record id (not resolved)
    repeated_ids: dict[str, int]  # source -> rows that repeat a record id
    junk: pl.DataFrame  # column, value, records: values too many records share


def _feed_records(
    src: SourceConfig, lf: pl.LazyFrame, cfg: IdentityConfig, missing: set[str]
) -> pl.LazyFrame:
    schema = lf.collect_schema()
    exprs = [
        pl.lit(src.name).alias(SOURCE),
        pl.col(src.record_id).cast(pl.String).str.strip_chars().alias(RECORD),
        (pl.col(src.updated_at) if src.updated_at else pl.lit(None))
        .cast(pl.Datetime("us", "UTC"))
        .alias(_TS),
    ]
    for col in cfg.columns:
        kind = cfg.fields.get(col, "exact")
        if col not in schema:
            missing.add(col)
            exprs.append(pl.lit(None, pl.String).alias(col))
            continue
        region_col = src.phone_region_column if src.phone_region_column in schema else None
        value = standardize.field(col, kind, schema[col], src.phone_region, region_col)
        exprs.append(standardize.without_junk(value, cfg.junk_values).alias(col))
    return lf.select(exprs)


def prepare(
    feeds: dict[str, tuple[SourceConfig, pl.LazyFrame]], cfg: IdentityConfig
) -> tuple[Records, set[str]]:
    """The normalised records of every feed, and the identity columns no feed has."""
    missing: dict[str, set[str]] = {}
    parts = []
    for name, (src, lf) in feeds.items():
        missing[name] = set()
        parts.append(_feed_records(src, lf, cfg, missing[name]))
    stacked = pl.concat(parts, how="vertical_relaxed").collect()
    absent = set.intersection(*missing.values()) if missing else set()

    has_id = pl.col(RECORD).is_not_null() & (pl.col(RECORD).str.len_chars() > 0)
    without_id = stacked.filter(~has_id).group_by(SOURCE).len()
    stacked = stacked.filter(has_id)
    repeated = (
        (stacked.group_by(SOURCE, RECORD).len().filter(pl.col("len") > 1))
        .group_by(SOURCE)
        .agg((pl.col("len") - 1).sum())
    )
    table = (
        stacked.sort([SOURCE, RECORD, _TS], descending=[False, False, True], nulls_last=True)
        .unique([SOURCE, RECORD], keep="first", maintain_order=True)
        .drop(_TS)
    )

    junk_parts = []
    nulls = []
    for col in cfg.columns:
        if cfg.fields.get(col, "exact") not in IDENTIFYING_KINDS:
            continue
        counts = table.group_by(col).len().drop_nulls(col)
        frequent = counts.filter(pl.col("len") > cfg.max_records_per_value)
        if frequent.height:
            junk_parts.append(
                frequent.select(
                    pl.lit(col).alias("column"),
                    pl.col(col).alias("value"),
                    pl.col("len").alias("records"),
                )
            )
            nulls.append(
                pl.when(~pl.col(col).is_in(frequent.get_column(col).implode()))
                .then(pl.col(col))
                .alias(col)
            )
    if nulls:
        table = table.with_columns(nulls)
    canonical = [
        standardize.canonical_name(pl.col(c)).alias(c + standardize.CANONICAL_SUFFIX)
        for c, k in cfg.fields.items()
        if k == "name"
    ]
    table = (
        table.with_columns(canonical)
        .with_columns(pl.struct(cfg.columns).hash(seed=7).alias(FINGERPRINT))
        .with_row_index(SPLINK_ROW_ID)
        .with_columns(pl.col(SPLINK_ROW_ID).cast(pl.Int64))
    )
    junk = (
        pl.concat(junk_parts).sort("records", descending=True)
        if junk_parts
        else pl.DataFrame(schema={"column": pl.String, "value": pl.String, "records": pl.UInt32})
    )
    return (
        Records(
            table=table,
            without_id=dict(without_id.iter_rows()),
            repeated_ids=dict(repeated.iter_rows()),
            junk=junk,
        ),
        absent,
    )
