"""What Braze should hold for one sync: its attributes and segment attributes, one row per user,
lazily, for the planner to stream against the sync state."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import polars as pl

from amp_braze.audiences.memberships import segment_attributes
from amp_braze.braze.field_rules import held_column
from amp_braze.braze.identifiers import ID, identifier_columns
from amp_braze.braze.normalize import group_state
from amp_braze.braze.plan_columns import subscription_column
from amp_braze.catalogue import MEMBERSHIPS, SINGLE_SYNC
from amp_braze.config import Config, SyncSpec
from amp_braze.profiles.attributes import sent_columns
from amp_braze.storage import Storage
from amp_braze.sync.plan import Side, zip_or_join


@dataclass
class Wanted:
    side: Side  # lazy, sorted by __id
    segment_booleans: list[str]
    segment_array: str | None
    protected_ids: pl.Series
    # table column -> its subscription group's column in the plan and state (see plan_columns)
    subscriptions: dict[str, str] = field(default_factory=dict)

    @cached_property
    def table(self) -> pl.DataFrame:
        return self.side.frame.collect()


AUDIENCE, EXCLUDED = "__audience", "__excluded"


def wanted_state(config: Config, storage: Storage, spec: SyncSpec) -> Wanted:
    """Attributes + segment attributes, one row per user: what Braze should hold for this sync.
    Lazy: the planner streams it. The Parquet footers say whether memberships list the same users
    in the same rows as the attributes (then they are put side by side without reading ids). A
    campaign keeps only its audience's members (minus exclusions) and the attributes it names."""
    b = config.destination_of(spec)
    paths = spec.names
    # Rows and footer from one version of each table: the footers' ids digests decide whether
    # the two tables are put side by side, so they must describe the rows read.
    snap = storage.table_snapshot(paths.attributes)
    attrs, footer = snap.frame, snap.footer
    id_cols = identifier_columns(b.identifier)
    schema = attrs.collect_schema()
    sent = sent_columns(schema, b.identifier)
    if spec.attributes is not None:
        missing = [a for a in spec.attributes if a not in sent]
        if missing:
            raise ValueError(
                f"syncs.{spec.name}.attributes: {missing[0]!r} is not a column of "
                f"{paths.attributes} (its columns: {', '.join(sent)})"
            )
        sent = [c for c in sent if c in spec.attributes]
    groups = spec.subscription_groups
    for column in groups:
        if column not in schema:
            where = "sync" if spec.name == SINGLE_SYNC == spec.destination else f"syncs.{spec.name}"
            raise ValueError(
                f"{where}.subscription_groups: {column!r} is not a column of "
                f"{paths.attributes} (its columns: {', '.join(sent)})"
            )
    sent = [c for c in sent if c not in groups]  # a state is never sent as an attribute
    cols = id_cols + [ID] + sent
    # Values a field rule set aside this run (an invalid phone): the planner leaves them alone.
    cols += [held_column(c) for c in sent if held_column(c) in schema]
    # Subscription states, by group id; where there is none, Braze keeps what it has (held).
    subs = {c: subscription_column(g) for c, g in groups.items()}
    states = []
    for c, sc in subs.items():
        state, bad = group_state(pl.col(c), schema[c])
        states += [state.alias(sc), bad.alias(held_column(sc))]
    frame = attrs.select([*cols, *states])
    digest, ids = footer.get("ids_digest"), None
    segs = list(spec.segments) if spec.segments is not None else list(config.segments)
    booleans: list[str] = []
    array: str | None = None
    if segs or spec.audience:
        members = storage.table_snapshot(MEMBERSHIPS)
        mem = members.frame
        extra = segment_attributes(mem, b, segs) if segs else mem.select(ID)
        if spec.audience:
            extra = pl.concat(
                [
                    extra,
                    mem.select(
                        pl.any_horizontal(list(spec.audience)).alias(AUDIENCE),
                        pl.any_horizontal(list(spec.exclude) or [pl.lit(False)]).alias(EXCLUDED),
                    ),
                ],
                how="horizontal",
            )
        if digest and digest == members.footer.get("ids_digest"):
            frame = pl.concat([frame, extra.drop(ID)], how="horizontal")
        else:
            both = pl.collect_all([attrs.select(ID), mem.select(ID)])
            ids, mem_ids = (f.get_column(ID) for f in both)
            frame = zip_or_join(frame, ids, extra, mem_ids)
        if b.segment_attributes == "boolean":
            booleans = b.segment_attribute_names(segs)
        else:
            array = (b.segment_attribute_names(segs) or [None])[0]
    non_null = {c: n for c, n in footer.get("non_null", {}).items() if c in cols}
    side = Side(frame, ids, digest, footer.get("rows"), non_null)
    if spec.audience:  # only members: the rows (and what the footer says of them) change
        frame = frame.filter(
            pl.col(AUDIENCE).fill_null(False) & ~pl.col(EXCLUDED).fill_null(False)
        ).drop(AUDIENCE, EXCLUDED)
        side = Side(frame)
    protected = pl.Series(ID, [], dtype=pl.String)
    if storage.table_exists(paths.field_rejections):
        protected = storage.read_table(paths.field_rejections).get_column(ID).drop_nulls().unique()
    return Wanted(side, booleans, array, protected, subs)
