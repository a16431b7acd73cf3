"""Columnar encoding of /users/track attribute objects: a plan's rows to JSON request bodies.

The plan is wide: per attribute ``a`` a value column ``a`` and a flag ``__c_a`` (send it or not). Each
attribute becomes a JSON fragment ``"a":<value>`` (polars' own JSON encoder, so escaping is right),
only where its flag is set; fragments join into one object per row and objects into request bodies of
at most 75 objects and 4 MB. No Python dict is built per row or per attribute.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from amp_braze.braze import field_rules
from amp_braze.braze.identifiers import ID
from amp_braze.braze.plan_columns import ADD, NEW, REMOVE, WHOLE, AttrSpec, flag


@dataclass
class Request:
    objects: list[str]  # JSON objects, in order
    ids: list[str]  # the __id of each object (maps Braze's error index back to rows)
    array: str = "attributes"  # or "events", "purchases": the /users/track array they go in

    @property
    def body(self) -> bytes:
        return b'{"' + self.array.encode() + b'":[' + ",".join(self.objects).encode() + b"]}"


def wire(col: str, dtype: pl.DataType) -> pl.Expr:
    """The value as Braze wants it on the wire: dates as YYYY-MM-DD, times as ISO 8601 UTC."""
    c = pl.col(col)
    if dtype == pl.Date:
        return c.dt.strftime("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime):
        utc = (
            c.dt.replace_time_zone("UTC")
            if dtype.time_zone is None
            else c.dt.convert_time_zone("UTC")
        )
        return utc.dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
    return c


def comparable_types(a: pl.DataType, b: pl.DataType) -> bool:
    """Whether a value of type ``a`` and one of type ``b`` can be compared as Braze sees them:
    numbers of any width can; dates and times can when they are written alike on the wire
    (``_wire``: a Date as YYYY-MM-DD, a Datetime of any unit or zone as ISO 8601 UTC); a Date
    against a Datetime, or text against numbers, cannot: every value of the new type is a new
    one to Braze. Null goes with anything. The planner (what to send) and the sync state (what
    old values to keep when a type changes) both decide by this one rule."""
    if a == pl.Null or b == pl.Null or a == b:
        return True
    if a.is_numeric() and b.is_numeric():
        return True
    return a.is_temporal() and b.is_temporal() and a.base_type() == b.base_type()


def fragment(name: str, value: pl.Expr) -> pl.Expr:
    """``"name":<json>`` for one value (null encodes as null, which unsets in Braze)."""
    encoded = pl.struct(value.alias(name)).struct.json_encode()
    return encoded.str.slice(1, encoded.str.len_bytes() - 2)


def identifier_fragment(kind: str) -> pl.Expr:
    if kind == "user_alias":
        alias = pl.struct(
            pl.col("alias_name").cast(pl.String), pl.col("alias_label").cast(pl.String)
        )
        return fragment("user_alias", alias)
    return fragment(kind, pl.col(kind).cast(pl.String))


def object_json(
    plan: pl.DataFrame, attrs: list[AttrSpec], kind: str, update_existing_only: bool = False
) -> pl.Series:
    """One JSON object string per plan row, holding only the flagged attributes."""
    schema = plan.schema
    whole_array = pl.col(WHOLE) if WHOLE in schema else pl.col(NEW)
    fragments = [identifier_fragment(kind)]
    if update_existing_only:
        fragments.append(pl.lit('"_update_existing_only":true'))
    elif kind == "user_alias":
        fragments.append(
            pl.lit('"_update_existing_only":false')
        )  # else Braze will not create aliases
    for a in attrs:
        f = pl.col(flag(a.name))
        if a.array_ops:
            ops = pl.struct(
                pl.when(pl.col(a.name + ADD).list.len() > 0)
                .then(pl.col(a.name + ADD))
                .alias("add"),
                pl.when(pl.col(a.name + REMOVE).list.len() > 0)
                .then(pl.col(a.name + REMOVE))
                .alias("remove"),
            ).struct.json_encode()
            # Drop the null member of {"add":..,"remove":null}: Braze reads null as "no such op" anyway,
            # but a smaller body is a cheaper one.
            ops = ops.str.replace(r',"remove":null', "", literal=True).str.replace(
                r'"add":null,', "", literal=True
            )
            whole = fragment(a.name, pl.col(a.name))
            frag = (
                pl.when(whole_array)
                .then(whole)
                .otherwise(pl.concat_str(pl.lit(f'"{a.name}":'), ops))
            )
        else:
            frag = fragment(a.name, wire(a.name, schema[a.name]))
        fragments.append(pl.when(f).then(frag))
    body = pl.concat_str(fragments, separator=",", ignore_nulls=True)
    return plan.select(pl.concat_str(pl.lit("{"), body, pl.lit("}")).alias("obj")).to_series()


def data_points(plan: pl.DataFrame, attrs: list[AttrSpec]) -> pl.Series:
    """Data points each plan row costs, as Braze bills them (field_rules.attribute_data_points)."""
    terms = []
    whole_array = pl.col(WHOLE) if WHOLE in plan.columns else pl.col(NEW)
    for a in attrs:
        if not a.billable:
            continue
        f = pl.col(flag(a.name))
        if a.array_ops:
            added = pl.col(a.name + ADD).list.len()
            cost = pl.when(whole_array).then(1).when(added > 0).then(added).otherwise(1)
            terms.append(pl.when(f).then(cost).otherwise(0))
        else:
            terms.append(f.cast(pl.Int64))
    if not terms:
        return pl.Series("data_points", [0] * plan.height, dtype=pl.Int64)
    return plan.select(pl.sum_horizontal(terms).cast(pl.Int64).alias("data_points")).to_series()


def requests(
    objects: pl.Series,
    ids: pl.Series,
    max_objects: int = field_rules.MAX_OBJECTS_PER_REQUEST,
    max_bytes: int = field_rules.MAX_BODY_BYTES,
    array: str = "attributes",
) -> Iterator[Request]:
    """Requests of at most ``max_objects`` objects and ``max_bytes`` bytes, in plan order, in
    ``array`` of /users/track (the object limit counts the three arrays together)."""
    frame = pl.DataFrame({"obj": objects, ID: ids}).with_row_index("__row")
    batches = (
        frame.with_columns(
            (pl.col("__row") // max_objects).alias("__batch"),
            (pl.col("obj").str.len_bytes() + 1).alias("__len"),
        )
        .group_by("__batch", maintain_order=True)
        .agg(pl.col("obj"), pl.col(ID), pl.col("__len").sum())
    )
    overhead = len(f'{{"{array}":[]}}'.encode())
    for objs, batch_ids, size in batches.select("obj", ID, "__len").iter_rows():
        if size + overhead <= max_bytes:
            yield Request(objs, batch_ids, array)
            continue
        # Rare (very wide rows): split this batch greedily by size.
        part: list[str] = []
        part_ids: list[str] = []
        part_size = overhead
        for obj, oid in zip(objs, batch_ids, strict=True):
            n = len(obj.encode()) + 1
            if part and part_size + n > max_bytes:
                yield Request(part, part_ids, array)
                part, part_ids, part_size = [], [], overhead
            part.append(obj)
            part_ids.append(oid)
            part_size += n
        if part:
            yield Request(part, part_ids, array)
