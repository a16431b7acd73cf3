"""Rebuilding a table from what changed, with exactly the result of a full rebuild.

A row's content is known by a 64-bit hash of its values (``row_hashes``); what the last build made
from an unchanged row is reused, everything else is built again. A build records a fingerprint of
everything besides the rows that shapes its result (column names and types, configuration, the
polars version that hashes); when it differs, the build is a full one. Two different rows with the
same 64-bit hash would be taken for the same row: with ten million rows, about one chance in
three hundred thousand per run that any pair collides.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from amp_braze.braze import field_rules, normalize
from amp_braze.braze.identifiers import ID, id_expr
from amp_braze.catalogue import PROFILES
from amp_braze.config import BrazeConfig, SourceConfig
from amp_braze.metadata import Laps
from amp_braze.profiles import attributes
from amp_braze.profiles.attributes import Attributes, build_attributes
from amp_braze.profiles.unify import Unified, contribution, feed_key, key_column, unify
from amp_braze.sorted_rows import replace_rows
from amp_braze.storage import Snapshot, Storage

# The hash of the row a stored row was built from (a profile SQL row, a feed row).
RAW_HASH = "__row_hash"
FINGERPRINT = "build_fingerprint"  # in a built table's footer
# The code of the field rules: a new amp_braze that checks differently rebuilds everything.
_RULES = hashlib.sha256(
    b"".join(Path(m.__file__).read_bytes() for m in (attributes, field_rules, normalize))
).hexdigest()


def row_hashes(df: pl.DataFrame) -> pl.Series:
    return df.hash_rows(seed=0)


def fingerprint(*parts: object) -> str:
    """What a build depends on besides its rows, as one short digest."""
    text = "\n".join(repr(p) for p in (pl.__version__, *parts))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Rebuilt:
    attributes: Attributes
    fingerprint: str
    rows_built: int  # rows that went through the field rules this run
    incremental: bool
    seconds: dict[str, float] = field(default_factory=dict)


def attributes_from_changes(
    sql: Callable[[], pl.DataFrame],
    braze: BrazeConfig,
    previous: Snapshot | None,
) -> Rebuilt:
    """``build_attributes`` of the profile SQL's rows, sorted by the key, reusing the previous accepted
    rows whose SQL row is unchanged. ``sql`` is run here so that its result, as large as the table,
    can be let go as soon as the rows to check are taken from it.

    A row is built again when its hash is not among the previous accepted rows (new, changed, or
    rejected last time: a rejection can depend on other rows, so it is never reused), or when its
    identifier is now duplicated (the duplicate rule looks across rows; every row of a duplicated
    identifier is built again, together). Everything else is accepted exactly as before."""
    lap = Laps()
    raw = sql()
    lap("profile sql")
    # What build_attributes reads of the destination (not its endpoint, key or rate limits).
    fp = fingerprint(
        raw.schema,
        braze.columns,
        braze.identifier,
        braze.shadowed_fields,
        braze.phone_region,
        _RULES,
    )
    raw = _hashed(raw)
    if previous is None or previous.footer.get(FINGERPRINT) != fp:
        return _full(raw, braze, fp, lap)
    prev = previous.frame.select(RAW_HASH, ID).collect()  # the rest is read in the merge
    # One join of the two hash columns pairs each unchanged row with its previous accepted row.
    pairs = (
        raw.select(pl.col(RAW_HASH), pl.int_range(pl.len(), dtype=pl.UInt32).alias("now"))
        .join(
            prev.select(pl.col(RAW_HASH), pl.int_range(pl.len(), dtype=pl.UInt32).alias("was")),
            on=RAW_HASH,
        )
        .drop(RAW_HASH)
    )
    known = _mask(raw.height, pairs.get_column("now"))
    # Lazily: only the identifier columns are renamed and read (an eager rename copies the result).
    ids = raw.lazy().rename(braze.columns).select(id_expr(braze.identifier)).collect().to_series()
    # Rows reused were accepted last time, so no two of them share an identifier: a duplicate
    # now needs a row checked again, and those are few.
    fresh_ids = ids.filter(~known).drop_nulls()
    redo = ~known | ids.is_in(fresh_ids.implode())
    todo, rows = raw.filter(redo), raw.height
    del raw, ids  # the SQL result: from here on only the rows to check are needed
    lap("compare rows")
    part = build_attributes(todo, braze)
    del todo
    lap("field rules")
    reuse = pairs.filter(~redo.gather(pairs.get_column("now"))).get_column("was")
    keep = _mask(prev.height, reuse)
    gone = prev.get_column(ID).filter(~keep)
    del pairs, prev, known, keep
    # Rows not reused leave; rebuilt rows take the place of their user's previous row. The
    # snapshot is one version of the table, however often it is read.
    table, _ = replace_rows(previous.frame, ID, part.table, gone=gone)
    lap("merge with kept rows")
    attrs = replace(part, table=table, input_rows=rows)
    return Rebuilt(attrs, fp, part.input_rows, incremental=True, seconds=lap.seconds)


def _hashed(raw: pl.DataFrame) -> pl.DataFrame:
    return raw.with_columns(row_hashes(raw).alias(RAW_HASH))


def _mask(n: int, rows: pl.Series) -> pl.Series:
    """n booleans, true at ``rows``."""
    return pl.Series([], dtype=pl.Boolean).extend_constant(False, n).scatter(rows, True)


def _full(raw: pl.DataFrame, braze: BrazeConfig, fp: str, lap: Laps) -> Rebuilt:
    built = build_attributes(raw, braze)
    lap("field rules")
    table = built.table.sort(ID)
    lap("sort")
    return Rebuilt(
        replace(built, table=table), fp, raw.height, incremental=False, seconds=lap.seconds
    )


# -- customer_profiles --------------------------------------------------------------------------
# Beside the profiles table the build keeps, per feed, each row's key and hash (to find the keys
# whose rows changed) and, per customer, the feed each field came from (for the metadata).
ROWS = f"_rebuild/{PROFILES}/rows"
WON = f"_rebuild/{PROFILES}/won"
_LAYOUT = 2  # of the tables above: a build that stored another layout is not reused


@dataclass
class Profiles:
    unified: Unified
    footer: dict  # for the profiles table: what the next run compares against
    rows: dict[str, pl.DataFrame]  # per feed read this run: key and row hash of every row
    keys_rebuilt: int | None  # None: a full build
    unchanged: bool = False  # nothing changed: the stored tables stand
    seconds: dict[str, float] = field(default_factory=dict)


def profiles_from_changes(
    store: Storage, feeds: dict[str, tuple[SourceConfig, pl.LazyFrame]], versions: dict[str, str]
) -> Profiles:
    """``unify(feeds)``, rebuilding only the customers whose feed rows changed since the last build.

    ``versions`` names the version of each input (each feed table's write id, and the identity
    clusters' when keys come from identity resolution: new clusters mean new keys). A feed whose
    version is the one the last build read is not read at all; a changed one is hashed row by row
    and compared with the rows the last build saw; every key of a row added or removed is unified
    again from all feeds, and the rest of the previous table is kept as it is."""
    lap = Laps()
    key = key_column([src for src, _ in feeds.values()])
    fp = fingerprint(
        [
            (n, s.customer_key, s.key_normalize, s.updated_at, s.priority)
            for n, (s, _) in feeds.items()
        ],
        [lf.collect_schema() for _, lf in feeds.values()],
        sorted(set(versions) - set(feeds)),
        _LAYOUT,
    )
    last = _last_build(store, fp, feeds)
    if last is None:
        return _full_profiles(feeds, versions, fp, key)
    prev = last.profiles.footer
    known = prev["versions"]
    extra_changed = any(versions[n] != known.get(n) for n in versions if n not in feeds)
    changed = [n for n in feeds if extra_changed or versions[n] != known.get(n)]
    if not changed:
        return Profiles(
            Unified(pl.DataFrame(), key, pl.DataFrame(), prev["contribution"]), prev, {}, 0, True
        )
    rows: dict[str, pl.DataFrame] = {}
    touched: list[pl.Series] = []
    for name in changed:
        src, lf = feeds[name]
        rows[name] = _key_and_hash(src, lf, key)
        before, now = last.rows[name].frame, rows[name].lazy()
        for a, b in ((now, before), (before, now)):  # rows added, rows removed
            touched.append(a.join(b, on=RAW_HASH, how="anti").select(key).collect().to_series())
    keys = pl.concat(touched).drop_nulls().unique()
    lap("compare rows")
    part = unify(feeds, only=keys)
    lap("unify changed customers")
    previous = last.profiles.frame
    if part.profiles.columns != previous.collect_schema().names():
        return _full_profiles(feeds, versions, fp, key)
    # The rows of the customers rebuilt are replaced; the old ones are kept for the counts.
    profiles, old_profiles = replace_rows(previous, key, part.profiles, gone=keys)
    won, old_won = replace_rows(last.won.frame, key, part.won, gone=keys)
    counts = {n: prev["counts"][n] for n in feeds if n not in rows}
    counts |= {n: _counts(r, key) for n, r in rows.items()}
    counts = {n: counts[n] for n in feeds}
    # What the customers rebuilt took away and brought: the rest is as the last build counted.
    gone = contribution(feeds, old_profiles, old_won, {})
    came = contribution(feeds, part.profiles, part.won, {})
    totals = {
        n: {
            **c,
            **counts[n],
            "customers": c["customers"] - gone[n]["customers"] + came[n]["customers"],
            "fields_won": c["fields_won"] - gone[n]["fields_won"] + came[n]["fields_won"],
        }
        for n, c in prev["contribution"].items()
    }
    unified = Unified(profiles, key, won, totals)
    lap("replace their rows")
    footer = {
        FINGERPRINT: fp,
        "versions": versions,
        "counts": counts,
        "contribution": unified.contribution,
    }
    return Profiles(unified, footer, rows, keys.len(), seconds=lap.seconds)


@dataclass
class _LastBuild:
    """The tables the last build left, each pinned to the version its footer describes."""

    profiles: Snapshot
    won: Snapshot
    rows: dict[str, Snapshot]


def _last_build(store: Storage, fp: str, feeds: dict) -> _LastBuild | None:
    """The last build, when it can be reused: the same fingerprint and all its parts written by it
    (a build stopped between writing its parts, or two builds interleaved, make a full build)."""
    try:
        profiles = store.table_snapshot(PROFILES)
        if profiles.footer.get(FINGERPRINT) != fp:
            return None
        won = store.table_snapshot(WON)
        rows = {name: store.table_snapshot(f"{ROWS}/{name}") for name in feeds}
    except FileNotFoundError:
        return None
    if won.footer.get("build") != profiles.footer.get("build"):
        return None
    versions = profiles.footer["versions"]
    if any(rows[name].footer.get("version") != versions.get(name) for name in feeds):
        return None
    return _LastBuild(profiles, won, rows)


def _key_and_hash(src: SourceConfig, lf: pl.LazyFrame, key: str) -> pl.DataFrame:
    return lf.select(feed_key(src, key), pl.struct(pl.all()).hash(seed=0).alias(RAW_HASH)).collect()


def _counts(rows: pl.DataFrame, key: str) -> dict[str, int]:
    return {"rows": rows.height, "rows_without_key": rows.get_column(key).null_count()}


def _full_profiles(feeds: dict, versions: dict[str, str], fp: str, key: str) -> Profiles:
    unified = unify(feeds)
    rows = {n: _key_and_hash(src, lf, key) for n, (src, lf) in feeds.items()}
    counts = {n: _counts(r, key) for n, r in rows.items()}
    footer = {
        FINGERPRINT: fp,
        "versions": versions,
        "counts": counts,
        "contribution": unified.contribution,
    }
    return Profiles(unified, footer, rows, None)


def write_profiles(store: Storage, built: Profiles) -> str:
    """Store a build: its parts first, the profiles table (whose footer names them) last, so a
    build stopped half way is rebuilt in full next time rather than trusted."""
    build = uuid.uuid4().hex
    for name, rows in built.rows.items():
        store.write_table(f"{ROWS}/{name}", rows, {"version": built.footer["versions"][name]})
    store.write_table(WON, built.unified.won, {"build": build})
    return store.write_table(PROFILES, built.unified.profiles, built.footer | {"build": build})
