"""segment_memberships: every user's membership of every segment, exclusions applied, plus the
joiners/leavers against the previous table and the size guard against the last accepted sizes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from amp_braze.audiences.segment_rules import compile_rule
from amp_braze.braze.identifiers import ID, id_expr, identifier_columns
from amp_braze.catalogue import ATTRIBUTES
from amp_braze.config import BrazeConfig, Config, ConfigError, exclusion_order
from amp_braze.profiles.sql import run_sql


def check_rule_attributes(config: Config, schema: pl.Schema) -> None:
    """Compile every rule segment against the attributes' schema: unknown attributes, bad values
    and type mismatches become ConfigErrors before any data moves."""
    for name, seg in config.segments.items():
        if seg.rules is not None:
            compile_rule(seg.rules, schema, f"segments.{name}.rules")


def compute_memberships(
    config: Config,
    attributes: pl.DataFrame | pl.LazyFrame,
    tables: dict[str, pl.LazyFrame],
    now: dt.datetime | None = None,
) -> pl.DataFrame:
    """One row per user of ``attributes``: identifier columns, ``__id``, one boolean per segment.
    Lazy: only the columns the segments use are read."""
    kind = config.braze.identifier
    id_cols = identifier_columns(kind)
    raw: dict[str, pl.Expr] = {}
    attributes = attributes.lazy()
    schema = attributes.collect_schema()
    sql_tables = tables | {ATTRIBUTES: attributes}
    for name, seg in config.segments.items():
        if seg.rules is not None:
            raw[name] = compile_rule(seg.rules, schema, f"segments.{name}.rules", now)
        else:
            found = run_sql(seg.sql or "", sql_tables, f"segments.{name}.sql")
            missing = [c for c in id_cols if c not in found.columns]
            if missing:
                raise ConfigError(
                    f"segments.{name}.sql",
                    f"the query must return the identifier column {missing[0]!r}; it returns {', '.join(found.columns)}",
                )
            ids = found.select(id_expr(kind)).get_column(ID).drop_nulls().unique()
            raw[name] = pl.col(ID).is_in(ids.implode())
    # Exclusions in dependency order, so a segment reads the final membership of those it excludes.
    out = attributes.with_columns([raw[n].fill_null(False).alias(f"__raw_{n}") for n in raw])
    for name in exclusion_order({n: s.exclude for n, s in config.segments.items()}):
        expr = pl.col(f"__raw_{name}")
        for ex in config.segments[name].exclude:
            expr = expr & ~pl.col(f"__seg_{ex}")
        out = out.with_columns(expr.alias(f"__seg_{name}"))
    segments = [pl.col(f"__seg_{n}").alias(n) for n in config.segments]
    return out.select(id_cols + [ID] + segments).collect()


def segment_attributes(
    memberships: pl.LazyFrame, braze: BrazeConfig, segments: list[str]
) -> pl.LazyFrame:
    """The Braze custom attributes that carry memberships: ``<prefix><segment>`` booleans, or one
    array attribute holding the names of the user's segments (sorted)."""
    if braze.segment_attributes == "boolean":
        return memberships.select(
            [ID] + [pl.col(s).alias(braze.segment_attribute(s)) for s in segments]
        )
    names = pl.concat_list(
        [pl.when(pl.col(s)).then(pl.lit(s)).otherwise(pl.lit(None, pl.String)) for s in segments]
    ).list.drop_nulls()
    return memberships.select(pl.col(ID), names.list.sort().alias(braze.segment_array_attribute))


@dataclass
class Changes:
    sizes: dict[str, int]
    joiners: dict[str, int]
    leavers: dict[str, int]


def membership_changes(
    now: pl.DataFrame, before: pl.DataFrame | None, segments: list[str]
) -> Changes:
    sizes = {s: int(now.get_column(s).sum()) for s in segments}
    if before is None or not segments:
        return Changes(sizes, dict(sizes), dict.fromkeys(segments, 0))
    common = [s for s in segments if s in before.columns]
    previous = before.select([ID] + [pl.col(s).alias(f"{s}__before") for s in common])
    if before.height == now.height and before.get_column(ID).equals(now.get_column(ID)):
        # The same users in the same rows (both sorted by id; the usual day): side by side.
        joined = pl.concat([now.select(segments), previous.drop(ID)], how="horizontal")
    else:
        joined = now.select([ID] + segments).join(previous, on=ID, how="full", coalesce=True)
    counts = []
    for s in segments:
        cur = pl.col(s).fill_null(False)
        old = pl.col(f"{s}__before").fill_null(False) if s in common else pl.lit(False)
        counts += [(cur & ~old).sum().alias(f"+{s}"), (old & ~cur).sum().alias(f"-{s}")]
    row = joined.select(counts).row(0, named=True)
    joiners = {s: int(row[f"+{s}"]) for s in segments}
    leavers = {s: int(row[f"-{s}"]) for s in segments}
    return Changes(sizes, joiners, leavers)


@dataclass
class GuardResult:
    passed: bool
    problems: list[str]
    baseline: dict[str, int]


def size_guard(
    config: Config, sizes: dict[str, int], baseline: dict[str, int], accept_all: bool = False
) -> GuardResult:
    """A segment whose size moved more than its max_change since the last accepted sizes fails,
    unless the segment allows large changes (or the run accepts them). A segment with no baseline,
    or a baseline of zero, passes (there is nothing to compare with)."""
    problems = []
    for name, size in sizes.items():
        base = baseline.get(name)
        if base:
            problems += _too_far(config, name, abs(size - base) / base, accept_all,
                                 f"segment {name!r} changed from {base:,} to {size:,} members")  # fmt: skip
    return GuardResult(not problems, problems, baseline)


def _too_far(config: Config, name: str, change: float, accept_all: bool, what: str) -> list[str]:
    seg = config.segments[name]
    if change <= seg.max_change or seg.allow_large_change or accept_all:
        return []
    return [
        f"{what} ({change:.0%} > max_change {seg.max_change:.0%}); set "
        f"segments.{name}.allow_large_change: true or run with accept_segment_changes: true if "
        "this is intended"
    ]


def sharded_size_guard(
    config: Config,
    sizes: dict[str, int],
    shard: str,
    shards: dict[str, dict],
    n: int,
    accept_all: bool = False,
) -> GuardResult:
    """The size guard of one shard of n, over the whole segment. ``shards`` holds, per shard,
    the sizes it last accepted and last computed. A segment fails when the whole segment (this
    shard's new size plus every other shard's newest) moved more than max_change from the sizes
    the shards accepted, or when this shard's change, as if every shard changed alike, would move
    it that far: a change that reaches every shard stops at the first shard to see it, and while
    the whole segment is off (shards that failed accepted nothing) every shard stops. The
    baseline is the whole segment's accepted size; a segment some shard has not accepted yet
    passes."""
    problems, baseline = [], {}
    own = shards.get(shard, {}).get("accepted", {})
    others = [v for k, v in shards.items() if k != shard]
    for name, size in sizes.items():
        accepted = [own.get(name)] + [o.get("accepted", {}).get(name) for o in others]
        if len(accepted) < n or None in accepted or not sum(accepted):
            continue
        base = baseline[name] = sum(accepted)
        now = size + sum(o.get("latest", {}).get(name, 0) for o in others)
        problems += _too_far(config, name, abs(now - base) / base, accept_all,
                             f"segment {name!r} has {now:,} members over its {n} shards "
                             f"against {base:,} accepted")  # fmt: skip
        step = (size - own[name]) * n
        problems += _too_far(config, name, abs(step) / base, accept_all,
                             f"segment {name!r} changed by {size - own[name]:+,} members in "
                             f"{shard}, {step:+,} if every shard changed alike, of {base:,} "
                             "accepted")  # fmt: skip
    return GuardResult(not problems, problems, baseline)
