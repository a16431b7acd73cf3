"""Delta planning: the wanted state (attributes + segment attributes) against the sync state.

Per user, only the attributes whose value changed are flagged; new users get every non-null
attribute; a segment boolean that is false for a user Braze never had true for is not sent (false
and absent mean the same to a segment filter, and each would cost a data point); an attribute
dropped from the SQL is unset only if ``braze.unset_removed_attributes``; a user who disappeared is
ignored or unset per ``braze.on_removed_user``. Users set aside by field rules are never treated as
disappeared.

How: every table and state version is kept sorted by ``__id``. The two id columns are read and
matched (equal on most days; else one linear merge), then the attribute columns of both sides are
streamed side by side, row for row, without a join, keeping only changed rows (when the ids were
read, rows stream as row numbers and the kept ones get their ids back: no id column is decoded
twice). No hashing of strings, and memory stays far below the size of the two tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from amp_braze.braze import field_rules
from amp_braze.braze.identifiers import ALIAS_SEPARATOR, ID, identifier_columns
from amp_braze.braze.payload import comparable_types
from amp_braze.braze.plan_columns import ADD, NEW, REMOVE, WHOLE, AttrSpec, flag
from amp_braze.config import BrazeConfig
from amp_braze.storage import non_null_counts
from amp_braze.sync import subscriptions as subscription
from amp_braze.sync.id_match import Match, match_sorted_ids, row_numbers
from amp_braze.sync.plan_stats import plan_stats

OLD = "__old"
UNCERTAIN = (
    "__u_"  # in the sync state: Braze may or may not hold this value (a run died sending it)
)
OLD_ID = "__id__old"
MISALIGNED = "__misaligned"
W_ROW, S_ROW = "__w_row", "__s_row"  # row numbers in the wanted table and the state


@dataclass
class Plan:
    table: pl.DataFrame  # only rows with something to send
    attrs: list[AttrSpec]  # what goes to /users/track
    wanted_users: int
    state_fingerprint: str = ""
    stats: dict = field(default_factory=dict)
    subscriptions: list[str] = field(default_factory=list)  # group columns (sync.subscriptions)


@dataclass
class Side:
    """One side of a plan: a frame sorted by ``__id`` and what is known of it without a scan
    (from a Parquet footer, or because it is already in memory)."""

    frame: pl.LazyFrame
    ids: pl.Series | None = None
    ids_digest: str | None = None
    rows: int | None = None
    non_null: dict[str, int] | None = None

    @classmethod
    def of(cls, x: Side | pl.DataFrame | pl.LazyFrame) -> Side:
        if isinstance(x, Side):
            return x
        if isinstance(x, pl.DataFrame):
            ids = x.get_column(ID)
            return cls(x.lazy(), ids=ids, rows=x.height, non_null=non_null_counts(x))
        return cls(x)


def _old(a: str) -> str:
    return f"{a}{OLD}"


def uncertain(attr: str) -> str:
    return f"{UNCERTAIN}{attr}"


def _ids_from_key(kind: str) -> list[pl.Expr]:
    """The identifier columns Braze is sent, rebuilt from ``__id`` (the trimmed key)."""
    if kind == "user_alias":
        parts = pl.col(ID).str.split_exact(ALIAS_SEPARATOR, 1)
        return [
            parts.struct.field("field_1").alias("alias_name"),
            parts.struct.field("field_0").alias("alias_label"),
        ]
    return [pl.col(ID).alias(kind)]


def plan_delta(
    wanted: Side | pl.DataFrame | pl.LazyFrame,
    state: Side | pl.DataFrame | pl.LazyFrame,
    braze: BrazeConfig,
    segment_booleans: list[str],
    segment_array: str | None = None,
    protected_ids: pl.Series | None = None,
) -> Plan:
    """The delta. ``wanted``: identifier columns, ``__id`` and one column per managed attribute.

    Both sides are expected sorted by ``__id`` (amp_braze writes every table and state version
    that way; anything else is sorted here first). When both footers carry the same ids digest
    the rows line up as they are; otherwise the id columns are read and matched by a merge. The
    attribute columns are then streamed side by side, row for row, with no join, and only
    changed rows are kept, so memory stays far below the size of the two tables. Tables of more
    than ``PIECE_ROWS`` rows are planned a range of ids at a time, so memory stays bounded
    whatever their size."""
    w, s = Side.of(wanted), Side.of(state)
    args = (braze, segment_booleans, segment_array, protected_ids)
    done = [_delta(pw, ps, *args) for pw, ps in _pieces(w, s)]
    table = pl.concat([d.table for d in done]) if len(done) > 1 else done[0].table
    attrs, subs = subscription.split(done[0].attrs)
    plan = Plan(table, attrs, sum(d.wanted_rows for d in done), subscriptions=subs)
    track = plan.table.filter(subscription.track_rows(attrs)) if subs else plan.table
    plan.stats = plan_stats(track, plan.attrs, plan.wanted_users, w.frame, braze, w.non_null)
    plan.stats |= subscription.stats(plan.table, subs)
    plan.stats["state_users"] = sum(d.state_rows for d in done)
    plan.stats["users_no_longer_wanted"] = sum(d.gone for d in done)
    plan.stats["pieces"] = len(done)
    return plan


PIECE_ROWS = 8_000_000  # larger tables are planned a range of ids at a time


def _pieces(w: Side, s: Side) -> list[tuple[Side, Side]]:
    """The two sides cut into ranges of ids of at most about ``PIECE_ROWS`` wanted rows (both
    sorted by id): the same row ranges when their rows line up, else the wanted table's row
    ranges and the state's rows whose ids fall between the same cut points."""
    rows = max(w.rows or 0, s.rows or 0)
    if w.rows is None or s.rows is None or rows <= PIECE_ROWS or w.ids is not None or not w.rows:
        return [(w, s)]
    starts = list(range(0, w.rows, PIECE_ROWS))
    if w.ids_digest and w.ids_digest == s.ids_digest and w.rows == s.rows:
        return [
            (
                Side(w.frame.slice(a, PIECE_ROWS), ids_digest=f"{w.ids_digest}/{a}", rows=n),
                Side(s.frame.slice(a, PIECE_ROWS), ids_digest=f"{w.ids_digest}/{a}", rows=n),
            )
            for a in starts
            for n in [min(PIECE_ROWS, w.rows - a)]
        ]
    # The state's rows for each piece: found by binary search in its id column (read once, and
    # handed to the pieces so they need not read it again), then read as row ranges.
    first_ids = pl.collect_all([w.frame.slice(a, 1).select(ID) for a in starts[1:]])
    cuts = pl.Series(ID, [f.item() for f in first_ids], dtype=pl.String)
    s_ids = s.frame.select(ID).collect().get_column(ID)
    if not s_ids.is_sorted():
        return [(w, s)]  # the single piece sorts it
    bounds = [0, *s_ids.search_sorted(cuts, side="left").to_list(), s_ids.len()]
    return [
        (
            Side(w.frame.slice(a, PIECE_ROWS)),
            Side(s.frame.slice(lo, hi - lo), ids=s_ids.slice(lo, hi - lo), rows=hi - lo),
        )
        for a, lo, hi in zip(starts, bounds[:-1], bounds[1:], strict=True)
    ]


@dataclass
class _Rows:
    table: pl.DataFrame
    attrs: list[AttrSpec]
    wanted_rows: int
    state_rows: int
    gone: int


def _delta(
    w: Side,
    s: Side,
    braze: BrazeConfig,
    segment_booleans: list[str],
    segment_array: str | None,
    protected_ids: pl.Series | None,
) -> _Rows:
    """The changed rows of one range of ids (see ``plan_delta``)."""
    wanted, state = w.frame, s.frame
    kind = braze.identifier
    id_cols = identifier_columns(kind)
    w_schema, s_schema = wanted.collect_schema(), state.collect_schema()
    managed = [
        c
        for c in w_schema.names()
        if c not in id_cols and c != ID and not field_rules.is_held_column(c)
    ]
    # A value set aside by a field rule (an invalid phone) is not sent: Braze keeps what it has.
    held = {
        a: field_rules.held_column(a) for a in managed if field_rules.held_column(a) in w_schema
    }
    # (a subscription group no longer configured is left as Braze has it: never unset)
    removed_attrs = [
        c
        for c in s_schema.names()
        if not c.startswith(subscription.NOT_ATTRIBUTES) and c not in managed
    ]
    unset_attrs = removed_attrs if braze.unset_removed_attributes else []
    in_state = [a for a in managed + unset_attrs if a in s_schema]
    marked = [a for a in in_state if uncertain(a) in s_schema]
    ids: tuple[pl.Series, pl.Series] | None = None  # (wanted, state) ids, when read
    if w.ids_digest and w.ids_digest == s.ids_digest and w.rows is not None and s.rows is not None:
        match = Match(row_numbers(), row_numbers())  # the same ids in the same rows: no reading
        w_rows, s_rows = w.rows, s.rows
    else:
        w_ids, s_ids = _read_ids(w, s)
        if not w_ids.is_sorted():
            wanted, w_ids = wanted.sort(ID), w_ids.sort()
        if not s_ids.is_sorted():
            state, s_ids = state.sort(ID), s_ids.sort()
        match = match_sorted_ids(w_ids, s_ids)
        w_rows, s_rows = w_ids.len(), s_ids.len()
        ids = (w_ids, s_ids)

    def dtype(a: str) -> pl.DataType:
        return w_schema.get(a) or s_schema.get(a) or pl.Null()

    cur_cols = [pl.col(a) for a in managed] + [pl.lit(None, dtype(a)).alias(a) for a in unset_attrs]
    cur_cols += [pl.col(h) for h in held.values()]
    old_cols = [pl.col(a).alias(_old(a)) for a in in_state] + [
        pl.col(uncertain(a)).fill_null(False) for a in marked
    ]
    no_old = [pl.lit(None, s_schema[a]).alias(_old(a)) for a in in_state] + [
        pl.lit(False).alias(uncertain(a)) for a in marked
    ]
    not_new = pl.lit(False).alias(NEW)
    if ids is None:
        # The footers say the rows line up: the two id columns are compared as they stream.
        parts = [
            pl.concat(
                [
                    wanted.select([pl.col(ID), *cur_cols]),
                    state.select([*old_cols, pl.col(ID).alias(OLD_ID)]),
                ],
                how="horizontal",
            ).with_columns(not_new, pl.col(ID).ne_missing(pl.col(OLD_ID)).alias(MISALIGNED))
        ]
    else:
        # Users in both, side by side: the rows only one side has are filtered out of each. The
        # ids were just read, so rows are carried as row numbers and their ids put back after:
        # no id column is decoded a second time.
        new_rows, gone_rows = match.new_rows, match.gone_rows
        w_num, s_num = wanted.with_row_index(W_ROW), state.with_row_index(S_ROW)
        no_w, no_s = pl.lit(None, pl.UInt32).alias(W_ROW), pl.lit(None, pl.UInt32).alias(S_ROW)
        parts = [
            pl.concat(
                [
                    _rows(w_num, W_ROW, new_rows, keep=False).select([pl.col(W_ROW), *cur_cols]),
                    _rows(s_num, S_ROW, gone_rows, keep=False).select([*old_cols, pl.col(S_ROW)]),
                ],
                how="horizontal",
            ).with_columns(not_new)
        ]
        if new_rows.len():
            parts.append(
                _rows(w_num, W_ROW, new_rows, keep=True).select(
                    [pl.col(W_ROW), *cur_cols, *no_old, no_s, pl.lit(True).alias(NEW)]
                )
            )
        # Users in the state but no longer wanted, unless protected (set aside by field rules).
        unset = gone_rows if braze.on_removed_user == "unset" else gone_rows.clear()
        if unset.len() and protected_ids is not None and protected_ids.len():
            unset = unset.filter(~s_ids.gather(unset).is_in(protected_ids.implode()))
        if unset.len():
            gone_cols = managed + unset_attrs
            parts.append(
                _rows(s_num, S_ROW, unset, keep=True).select(
                    [no_w]
                    + [
                        subscription.removed_value(a, dtype(a), s_schema, uncertain(a), marked)
                        for a in gone_cols
                    ]
                    + [pl.lit(None, pl.String).alias(h) for h in held.values()]
                    + [*old_cols, pl.col(S_ROW), not_new]
                )
            )

    types = {a: (dtype(a), s_schema[a]) for a in in_state}
    attrs, exprs = _changes(
        managed + unset_attrs, types, marked, segment_booleans, segment_array, held
    )
    flags = [flag(a.name) for a in attrs]
    any_change = pl.any_horizontal(flags) if flags else pl.lit(False)
    if ids is None:
        any_change = any_change | pl.col(MISALIGNED)
    whole = [WHOLE] if segment_array in marked else []
    if whole:  # an array Braze may hold either way goes whole, not as add/remove
        exprs.append((pl.col(NEW) | pl.col(uncertain(segment_array))).alias(WHOLE))
    keep = [ID, NEW, *whole] + [c for a in attrs for c in _plan_cols(a)]
    misaligned = RuntimeError(
        "sync plan: the wanted and state rows did not line up; was a table rewritten while the "
        "plan read it? Materialize braze_sync_plan again."
    )
    try:
        frames = pl.collect_all(
            [p.with_columns(exprs).filter(any_change) for p in parts], engine="streaming"
        )
    except pl.exceptions.ShapeError as e:  # the two sides do not even have the same length
        raise misaligned from e
    if ids is None:
        if frames[0].get_column(MISALIGNED).any():
            raise misaligned
    else:
        frames = [_put_ids(f, *ids) for f in frames]
        if not frames[0].get_column(ID).equals(frames[0].get_column(OLD_ID)):
            raise misaligned
    table = frames[0].select(keep)
    for f in frames[1:]:  # each part is sorted by id: merge, not sort
        table = table.merge_sorted(f.select(keep), key=ID)
    # The identifier sent is the key itself (trimmed, as a string): the same for every row, and
    # the raw identifier columns never have to be read.
    table = table.select(_ids_from_key(kind) + keep)
    return _Rows(table, attrs, w_rows, s_rows, match.gone_rows.len())


def _changes(
    attributes: list[str],
    types: dict[str, tuple[pl.DataType, pl.DataType]],
    marked: list[str],
    segment_booleans: list[str],
    segment_array: str | None,
    held: dict[str, str] | None = None,
) -> tuple[list[AttrSpec], list[pl.Expr]]:
    """Per attribute, whether it changed (and for the array attribute what to add and remove).
    A user new to the state has every old value null, so the same expressions serve them.
    ``types``: (wanted, state) types of the attributes the state has; ``marked``: attributes
    with uncertain values in the state, which are sent whatever they are; ``held``: attribute ->
    its column holding, where a field rule set the value aside this run, its text (then the
    attribute is not sent)."""
    attrs: list[AttrSpec] = []
    exprs: list[pl.Expr] = []
    for a in attributes:
        cur = pl.col(a)
        prev = pl.col(_old(a)) if a in types else pl.lit(None, dtype=pl.Null)
        unsure = pl.col(uncertain(a)) if a in marked else pl.lit(False)
        if a in types and not comparable_types(*types[a]):
            # The SQL changed the attribute's type: every value is a new one to Braze.
            changed = cur.is_not_null() | prev.is_not_null()
            attrs.append(AttrSpec(a, array_ops=a == segment_array))
            if a == segment_array:
                exprs += [cur.alias(a + ADD), pl.lit([], pl.List(pl.String)).alias(a + REMOVE)]
        elif a == segment_array:
            empty = pl.lit([], dtype=pl.List(pl.String))
            add = cur.fill_null(empty).list.set_difference(prev.fill_null(empty))
            remove = prev.fill_null(empty).list.set_difference(cur.fill_null(empty))
            exprs += [add.alias(a + ADD), remove.alias(a + REMOVE)]
            changed = (add.list.len() > 0) | (remove.list.len() > 0)
            attrs.append(AttrSpec(a, array_ops=True))
        elif a in segment_booleans:
            # Absent and false are the same to a segment filter: only a real change is sent.
            changed = cur.fill_null(False) != prev.fill_null(False)
            attrs.append(AttrSpec(a))
        else:
            changed = cur.ne_missing(prev)
            attrs.append(AttrSpec(a))
        send = changed.fill_null(False) | unsure
        if held and a in held:
            send = send & pl.col(held[a]).is_null()
        exprs.append(send.alias(flag(a)))
    return attrs, exprs


def _read_ids(wanted: Side, state: Side) -> tuple[pl.Series, pl.Series]:
    todo = [side.frame.select(ID) for side in (wanted, state) if side.ids is None]
    read = iter(f.get_column(ID) for f in pl.collect_all(todo)) if todo else iter(())
    return tuple(side.ids if side.ids is not None else next(read) for side in (wanted, state))


def _rows(numbered: pl.LazyFrame, index: str, rows: pl.Series, keep: bool) -> pl.LazyFrame:
    """Only the given rows (``keep``) or all but them, by the row numbers in column ``index``."""
    if not rows.len() and not keep:
        return numbered
    hit = pl.col(index).is_in(rows.implode())
    return numbered.filter(hit if keep else ~hit)


def _put_ids(frame: pl.DataFrame, w_ids: pl.Series, s_ids: pl.Series) -> pl.DataFrame:
    """Row numbers back to ids: ``__id`` from the wanted side (the state's for a user no longer
    wanted), and the state row's id as ``__id__old`` to check that the rows lined up."""
    old = s_ids.gather(frame.get_column(S_ROW)).alias(OLD_ID)
    new = w_ids.gather(frame.get_column(W_ROW)).alias(ID)
    return frame.with_columns(new.fill_null(old), old)


def zip_or_join(
    left: pl.LazyFrame, left_ids: pl.Series, right: pl.LazyFrame, right_ids: pl.Series
) -> pl.LazyFrame:
    """``left`` with ``right``'s columns for the same ``__id`` (null where right has none):
    side by side when the id columns are equal (the usual case), else a left join."""
    if left_ids.len() == right_ids.len() and left_ids.equals(right_ids):
        return pl.concat([left, right.drop(ID)], how="horizontal")
    return left.join(right, on=ID, how="left", maintain_order="left")


def _plan_cols(a: AttrSpec) -> list[str]:
    cols = [a.name, flag(a.name)]
    if a.array_ops:
        cols += [a.name + ADD, a.name + REMOVE]
    return cols
