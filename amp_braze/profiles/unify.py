"""customer_profiles: one row per customer, unified across feeds with per-field survivorship.

Rule: for each field, the most recent non-null (and non-blank) value wins, by the feed's configured
``updated_at``; rows without a timestamp rank after those with one; ties go to the feed with the
higher ``priority``, then to the feed listed first in the configuration.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import polars as pl

from amp_braze.catalogue import profile_key
from amp_braze.config import SourceConfig
from amp_braze.shards import in_shard

SOURCES_COL = "source_feeds"
UPDATED_COL = "profile_updated_at"
_TS, _PRIO, _ORDER, _SRC = "__ts", "__priority", "__order", "__source"
# Which feed each field's value came from, one character per field (feeds in configured order).
WON, WON_CODES, NO_WINNER = "fields_won_by", string.ascii_letters + string.digits, "."


def key_column(sources: list[SourceConfig]) -> str:
    """The unified key's name: the feeds' shared customer_key name, else ``customer_key``."""
    return profile_key({s.customer_key for s in sources})


def normalize_key(expr: pl.Expr, how: str) -> pl.Expr:
    s = expr.cast(pl.String)
    if how == "none":
        return s
    s = s.str.strip_chars()
    if how in ("lower", "email"):
        s = s.str.to_lowercase()
    return pl.when(s.str.len_chars() > 0).then(s)


def with_amp_ids(
    feeds: dict[str, tuple[SourceConfig, pl.LazyFrame]], clusters: pl.LazyFrame
) -> dict[str, tuple[SourceConfig, pl.LazyFrame]]:
    """Feeds keyed by identity resolution: each row gets its record's amp_id as the customer
    key (the record id itself is not a profile field)."""
    out = {}
    for name, (src, lf) in feeds.items():
        ids = clusters.filter(pl.col("source") == name).select(
            pl.col("record_id").alias(src.record_id), "amp_id"
        )
        keyed = lf.with_columns(pl.col(src.record_id).cast(pl.String).str.strip_chars()).join(
            ids, on=src.record_id, how="left", maintain_order="left"
        )
        out[name] = (
            src.model_copy(update={"customer_key": "amp_id", "key_normalize": "none"}),
            keyed.drop(src.record_id),
        )
    return out


@dataclass
class Unified:
    profiles: pl.DataFrame
    key: str
    won: pl.DataFrame  # the key and WON: per field, the code of the feed its value came from
    contribution: dict[
        str, dict[str, int]
    ]  # source -> {rows, customers, fields_won, rows_without_key}


def _prepare(src: SourceConfig, lf: pl.LazyFrame, order: int, key: str) -> pl.LazyFrame:
    schema = lf.collect_schema()
    blank_to_null = [
        pl.when(pl.col(c).str.strip_chars().str.len_chars() > 0).then(pl.col(c)).alias(c)
        for c, dt in schema.items()
        if dt == pl.String and c not in (src.customer_key,)
    ]
    ts = (
        pl.col(src.updated_at).cast(pl.Datetime("us", "UTC"))
        if src.updated_at
        else pl.lit(None, pl.Datetime("us", "UTC"))
    )
    drop = [c for c in (src.updated_at,) if c]
    return (
        lf.with_columns(blank_to_null)
        .with_columns(
            feed_key(src, key),
            ts.alias(_TS),
            pl.lit(src.priority, pl.Int64).alias(_PRIO),
            pl.lit(order, pl.Int64).alias(_ORDER),
            pl.lit(src.name).alias(_SRC),
        )
        .drop([c for c in drop + [src.customer_key] if c != key])
    )


def feed_key(src: SourceConfig, key: str) -> pl.Expr:
    """A feed row's customer key as unification uses it."""
    return normalize_key(pl.col(src.customer_key), src.key_normalize).alias(key)


def shard_feeds(
    feeds: dict[str, tuple[SourceConfig, pl.LazyFrame]], shard: str, shards: int
) -> dict[str, tuple[SourceConfig, pl.LazyFrame]]:
    """The rows of each feed whose customer key is in ``shard`` (amp_braze.shards)."""
    key = key_column([cfg for cfg, _ in feeds.values()])
    return {
        name: (src, lf.filter(in_shard(feed_key(src, key), shard, shards)))
        for name, (src, lf) in feeds.items()
    }


def unify(
    feeds: dict[str, tuple[SourceConfig, pl.LazyFrame]], only: pl.Series | None = None
) -> Unified:
    """Unify feeds (name -> (config, frame)) into one row per customer, sorted by the key;
    ``only`` limits it to these keys (the result for them is what a full run gives them)."""
    key = key_column([cfg for cfg, _ in feeds.values()])
    frames = [lf for _, lf in feeds.values()]
    if only is not None:  # before anything else is done to the rows
        wanted = only.implode()
        frames = [
            lf.filter(feed_key(src, key).is_in(wanted))
            for (src, _), lf in zip(feeds.values(), frames, strict=True)
        ]
    parts = [
        _prepare(cfg, lf, i, key)
        for i, ((cfg, _), lf) in enumerate(zip(feeds.values(), frames, strict=True))
    ]
    stacked = pl.concat(parts, how="diagonal_relaxed")
    fields = [c for c in stacked.collect_schema() if c not in (key, _TS, _PRIO, _ORDER, _SRC)]
    with_key = stacked.filter(pl.col(key).is_not_null())
    # Stable: rows that tie on time, priority and feed keep their order in the feed, so a rerun
    # on the same data picks the same values.
    ordered = with_key.sort(
        [key, _TS, _PRIO, _ORDER],
        descending=[False, True, True, False],
        nulls_last=True,
        maintain_order=True,
    )
    aggs = [pl.col(f).drop_nulls().first().alias(f) for f in fields]
    codes = won_codes(feeds)
    winners = [
        pl.col(_SRC)
        .filter(pl.col(f).is_not_null())
        .first()
        .replace_strict(codes, return_dtype=pl.String)
        .fill_null(NO_WINNER)
        for f in fields
    ]
    grouped = (
        ordered.group_by(key, maintain_order=True)
        .agg(
            aggs
            + [pl.concat_str(winners).alias(WON)]
            + [
                pl.col(_TS).max().alias(UPDATED_COL),
                pl.col(_SRC).unique(maintain_order=True).sort().alias(SOURCES_COL),
            ]
        )
        .collect()
    )
    profiles = grouped.drop(WON)
    won = grouped.select(key, WON)
    counts = {} if only is not None else feed_counts(feeds)
    return Unified(profiles, key, won, contribution(feeds, profiles, won, counts))


def won_codes(feeds: dict) -> dict[str, str]:
    """Each feed's character in the WON column."""
    if len(feeds) > len(WON_CODES):
        raise ValueError(f"customer_profiles unifies at most {len(WON_CODES)} feeds")
    return dict(zip(feeds, WON_CODES, strict=False))


def feed_counts(feeds: dict[str, tuple[SourceConfig, pl.LazyFrame]]) -> dict[str, dict[str, int]]:
    """Rows and rows without a key, per feed."""
    key = key_column([cfg for cfg, _ in feeds.values()])
    out = {}
    for name, (src, lf) in feeds.items():
        row = lf.select(pl.len().alias("rows"), feed_key(src, key).is_null().sum()).collect().row(0)
        out[name] = {"rows": row[0], "rows_without_key": row[1]}
    return out


def contribution(
    feeds: dict[str, tuple[SourceConfig, pl.LazyFrame]],
    profiles: pl.DataFrame,
    won: pl.DataFrame,
    counts: dict[str, dict[str, int]],
) -> dict[str, dict[str, int]]:
    """Per feed: its rows, rows without a key, customers it knows and field values it won."""
    customers = profiles.select(
        pl.col(SOURCES_COL).list.contains(name).sum().alias(name) for name in feeds
    ).row(0)
    won_by = won.select(
        pl.col(WON).str.count_matches(code, literal=True).sum().alias(name)
        for name, code in won_codes(feeds).items()
    ).row(0, named=True)
    return {
        name: {
            "rows": counts.get(name, {}).get("rows", 0),
            "customers": customers[i],
            "rows_without_key": counts.get(name, {}).get("rows_without_key", 0),
            "fields_won": won_by.get(name, 0),
        }
        for i, name in enumerate(feeds)
    }
