"""Per event type: the rules a row must pass and the /users/track object it becomes, as polars
expressions over the prepared rows (``shape.prepared``)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from amp_braze.braze import event_rules as er
from amp_braze.braze.identifiers import ID, identifier_columns
from amp_braze.braze.payload import fragment, identifier_fragment
from amp_braze.events import shape
from amp_braze.events.shape import DUP, EVENT_ID, HASH, STATE, TIME, TS, EventsError

POINTS, OBJ, SENT_ID = "__points", "__obj", "__sent_id"
PART_SEPARATOR = ":part-"  # a purchase of quantity 250 goes out as <id>:part-1 .. :part-3


@dataclass
class TypeRules:
    rules: list[pl.Expr]  # in order; the first broken one is the row's rule
    body: list[pl.Expr]  # the object's members after the identifier
    points: pl.Expr
    array: str  # events | purchases


def _head(identifier: str, update_existing_only: bool) -> list[pl.Expr]:
    head = [identifier_fragment(identifier)]
    if update_existing_only:
        head.append(pl.lit('"_update_existing_only":true'))
    elif identifier == "user_alias":
        head.append(pl.lit('"_update_existing_only":false'))
    return head


def _taken(identifier: str) -> set[str]:
    return {*identifier_columns(identifier), EVENT_ID, TIME, ID, TS, HASH, DUP, STATE}


def custom(df: pl.DataFrame, identifier: str, name: str | None, stream: str) -> TypeRules:
    if name is None and "name" not in df.columns:
        raise EventsError(
            f"events.{stream}: a custom event needs its name: give events.{stream}.name, or "
            "return a `name` column"
        )
    taken = _taken(identifier) | ({"name"} if name is None else set())
    props = [c for c in df.columns if c not in taken]
    n = pl.lit(name) if name is not None else pl.col("name").cast(pl.String)
    rules = [
        pl.when(n.is_null() | (n.str.strip_chars() == "")).then(pl.lit("name_missing")),
        pl.when(n.str.len_chars() > er.MAX_PROPERTY_STRING_CHARS).then(pl.lit("name_too_long")),
        pl.when(n.str.starts_with("ecommerce.")).then(pl.lit("name_reserved: ecommerce.*")),
        *shape.property_rules(df.schema, props, er.RESERVED_EVENT_KEYS),
    ]
    body = [fragment("name", n), shape.time_member(), shape.properties_member(df.schema, props)]
    return TypeRules(rules, body, pl.lit(er.event_data_points(er.CUSTOM)), "events")


def purchase(df: pl.DataFrame, identifier: str) -> TypeRules:
    fields = ["product_id", "currency", "price"]
    missing = [c for c in fields if c not in df.columns]
    if missing:
        raise EventsError(f"a purchase needs the columns {', '.join(missing)}")
    has_q = "quantity" in df.columns
    props = [c for c in df.columns if c not in _taken(identifier) | {*fields, "quantity"}]
    pid, price = pl.col("product_id").cast(pl.String), pl.col("price")
    rules = [
        pl.when(pid.is_null() | (pid == "")).then(pl.lit("product_id_missing")),
        pl.when(pid.str.len_chars() > er.MAX_PRODUCT_ID_CHARS).then(pl.lit("product_id_too_long")),
        shape.currency_rule(),
    ]
    if not df.schema["price"].is_numeric():
        rules.append(pl.lit("price_not_a_number"))
    else:
        bad = price.is_null() | (
            price.cast(pl.Float64).is_nan() | price.cast(pl.Float64).is_infinite()
        )
        rules.append(pl.when(bad).then(pl.lit("price_missing")))
    if has_q:
        q = pl.col("quantity")
        if not df.schema["quantity"].is_integer():
            rules.append(pl.lit("quantity_not_an_integer"))
        else:
            rules.append(pl.when(q < 1).then(pl.lit("quantity_below_1")))
    rules += shape.property_rules(df.schema, props, er.RESERVED_PURCHASE_KEYS)
    body = [
        fragment("product_id", pid),
        fragment("currency", pl.col("currency")),
        fragment("price", price.cast(pl.Float64)),
        pl.concat_str(pl.lit('"quantity":'), pl.col("__quantity").cast(pl.String)),
        shape.time_member(),
        shape.properties_member(df.schema, props),
    ]
    return TypeRules(rules, body, pl.col("__quantity").cast(pl.Int64), "purchases")


def split_quantities(df: pl.DataFrame) -> pl.DataFrame:
    """A purchase of more than 100 units becomes several objects of at most 100 (250: 100, 100,
    50), each under its own id ``<event_id>:part-<k>``; ``__quantity`` is each object's."""
    q = pl.col("quantity").fill_null(1) if "quantity" in df.columns else pl.lit(1)
    cap = er.MAX_PURCHASE_QUANTITY
    df = df.with_columns(q.cast(pl.Int64).clip(lower_bound=1).alias("__q"))
    parts = ((pl.col("__q") + cap - 1) // cap).alias("__parts")
    out = df.with_columns(parts).with_columns(pl.int_ranges(0, pl.col("__parts")).alias("__k"))
    out = out.explode("__k").with_columns(
        pl.min_horizontal(pl.lit(cap), pl.col("__q") - pl.col("__k") * cap).alias("__quantity"),
        pl.when(pl.col("__parts") > 1)
        .then(
            pl.concat_str(
                pl.col(EVENT_ID), pl.lit(PART_SEPARATOR), (pl.col("__k") + 1).cast(pl.String)
            )
        )
        .otherwise(pl.col(EVENT_ID))
        .alias(SENT_ID),
    )
    return out.drop("__q", "__parts", "__k")


def _kind_ok(dtype: pl.DataType, kind: str) -> bool:
    if kind == er.STRING:
        return dtype == pl.String or dtype.is_numeric() or isinstance(dtype, pl.Categorical)
    if kind == er.FLOAT:
        return dtype.is_numeric()
    if kind == er.INTEGER:
        return dtype.is_integer()
    if kind == er.ARRAY:
        return isinstance(dtype, (pl.List, pl.Array))
    return isinstance(dtype, pl.Struct)


def _cast(expr: pl.Expr, kind: str) -> pl.Expr:
    if kind == er.STRING:
        return expr.cast(pl.String)
    if kind == er.FLOAT:
        return expr.cast(pl.Float64)
    return expr.cast(pl.Int64) if kind == er.INTEGER else expr


def _products(df: pl.DataFrame) -> tuple[list[pl.Expr], pl.Expr]:
    """The rules of a ``products`` list of structs, and the list rebuilt as Braze wants it
    (fields cast; fields Braze does not name moved under the product's ``metadata``)."""
    dt = df.schema["products"]
    inner = dt.inner if isinstance(dt, (pl.List, pl.Array)) else None
    if not isinstance(inner, pl.Struct):
        return [pl.lit("unexpected_data_type: products")], pl.col("products")
    have = {f.name: f.dtype for f in inner.fields}
    rules: list[pl.Expr] = []
    for f, kind in er.PRODUCT_REQUIRED.items():
        if f not in have:
            return [pl.lit(f"missing_property: products[].{f}")], pl.col("products")
        if not _kind_ok(have[f], kind):
            rules.append(pl.lit(f"unexpected_data_type: products[].{f}"))
    extra = [f for f in have if f not in er.PRODUCT_REQUIRED and f not in er.PRODUCT_OPTIONAL]
    if extra and "metadata" in have:
        raise EventsError(
            f"products[] has a metadata field and also {', '.join(extra)}: put them in metadata"
        )
    e = pl.element().struct.field
    for f in er.PRODUCT_REQUIRED:
        missing = pl.col("products").list.eval(e(f).is_null()).list.any()
        rules.append(pl.when(missing).then(pl.lit(f"missing_property: products[].{f}")))
    negative = pl.col("products").list.eval(e("price").cast(pl.Float64) < 0).list.any()
    rules.append(pl.when(negative).then(pl.lit("money_negative: products[].price")))
    kinds = {**er.PRODUCT_REQUIRED, **er.PRODUCT_OPTIONAL}
    fields = [_cast(e(f), kinds[f]).alias(f) for f in have if f in kinds]
    if extra:
        fields.append(pl.struct([e(f).alias(f) for f in extra]).alias("metadata"))
    return rules, pl.col("products").list.eval(pl.struct(fields))


def ecommerce(df: pl.DataFrame, identifier: str, event: str) -> TypeRules:
    spec = er.ECOMMERCE_EVENTS[event]
    taken = _taken(identifier)
    rules: list[pl.Expr] = []
    values: dict[str, pl.Expr] = {}
    for f, kind in spec.fields.items():
        if f not in df.columns:
            if f in spec.required:
                rules.append(pl.lit(f"missing_property: {f}"))
            continue
        if not _kind_ok(df.schema[f], kind):
            rules.append(pl.lit(f"unexpected_data_type: {f}"))
            continue
        if f in spec.required:
            rules.append(pl.when(pl.col(f).is_null()).then(pl.lit(f"missing_property: {f}")))
        values[f] = _cast(pl.col(f), kind)
    if event == "ecommerce.cart_updated" and "action" in values:
        action = values["action"]
        rules.append(
            pl.when(action.is_not_null() & ~action.is_in(er.CART_ACTIONS)).then(
                pl.lit("action_invalid")
            )
        )
        no_total = values["total_value"].is_null() if "total_value" in values else pl.lit(True)
        rules.append(
            pl.when(no_total & ~action.fill_null("replace").is_in(["add", "remove"])).then(
                pl.lit("missing_property: total_value")
            )
        )
    for f in sorted(er.MONEY_FIELDS & set(values)):
        rules.append(pl.when(values[f] < 0).then(pl.lit(f"money_negative: {f}")))
    if "currency" in values:
        values["currency"] = values["currency"].str.to_uppercase()
        rules.append(pl.when(~values["currency"].is_in(sorted(er.currency_codes())))
                     .then(pl.lit("currency_invalid")))  # fmt: skip
    if "products" in values:
        product_rules, values["products"] = _products(df)
        rules += product_rules
    extra = [c for c in df.columns if c not in taken and c not in spec.fields]
    meta = [pl.col("metadata").struct.field(f) for f in _struct_fields(df, "metadata")]
    meta += [shape.wire_value(c, df.schema[c]).alias(c) for c in extra]
    if meta:
        values["metadata"] = pl.struct(meta)
    body_members = [
        pl.when(v.is_not_null()).then(shape.without_nulls(fragment(f, v)))
        for f, v in values.items()
    ]
    props = pl.concat_str(pl.lit('"properties":{'),
                          pl.concat_str(body_members, separator=",", ignore_nulls=True),
                          pl.lit("}"))  # fmt: skip
    rules.append(pl.when(props.str.len_bytes() > er.MAX_NESTED_PROPERTIES_BYTES)
                 .then(pl.lit("properties_too_large")))  # fmt: skip
    body = [pl.lit(f'"name":"{event}"'), shape.time_member(), props]
    return TypeRules(rules, body, pl.lit(er.event_data_points(event)), "events")


def _struct_fields(df: pl.DataFrame, column: str) -> list[str]:
    dt = df.schema.get(column)
    return [f.name for f in dt.fields] if isinstance(dt, pl.Struct) else []


def rules_for(df: pl.DataFrame, kind: str, identifier: str, name: str | None,
              stream: str) -> TypeRules:  # fmt: skip
    if kind == er.CUSTOM:
        return custom(df, identifier, name, stream)
    if kind == er.PURCHASE:
        return purchase(df, identifier)
    return ecommerce(df, identifier, kind)


def object_expr(t: TypeRules, identifier: str, update_existing_only: bool) -> pl.Expr:
    return shape.json_object([*_head(identifier, update_existing_only), *t.body]).alias(OBJ)
