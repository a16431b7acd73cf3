"""The Braze identifier a destination uses, and the internal key column derived from it."""

from __future__ import annotations

import hashlib

import polars as pl

from amp_braze.braze import field_rules

ID = "__id"  # one string per user: the join key of attributes, memberships, plan and sync state
ALIAS_SEPARATOR = "\x1f"


def ids_digest(ids: pl.Series) -> str:
    """A fingerprint of an id column, order included: two tables whose digests are equal list the
    same users in the same rows, so the planner can put them side by side without reading ids.
    polars' hash is stable within a version only, so the version is part of the digest."""
    hashed = ids.cast(pl.String).hash(seed=0x5EED).to_numpy()
    return f"polars{pl.__version__}:{hashlib.blake2b(hashed.tobytes(), digest_size=16).hexdigest()}"


def id_footer(df: pl.DataFrame) -> dict[str, str]:
    """What a table keyed by ``__id`` records in its Parquet footer for the planner."""
    return {"ids_digest": ids_digest(df.get_column(ID))} if ID in df.columns else {}


def identifier_columns(kind: str) -> list[str]:
    """Columns the profile SQL must return for an identifier kind."""
    return ["alias_name", "alias_label"] if kind == "user_alias" else [kind]


def id_expr(kind: str) -> pl.Expr:
    if kind == "user_alias":
        return pl.concat_str(
            pl.col("alias_label").cast(pl.String),
            pl.lit(ALIAS_SEPARATOR),
            pl.col("alias_name").cast(pl.String),
        ).alias(ID)
    return pl.col(kind).cast(pl.String).str.strip_chars().alias(ID)


def id_problem(kind: str) -> pl.Expr:
    """The rule an identifier breaks (null when fine); duplicates are found separately."""
    cols = identifier_columns(kind)
    missing = pl.any_horizontal(
        [pl.col(c).is_null() | (pl.col(c).cast(pl.String).str.strip_chars() == "") for c in cols]
    )
    expr = pl.when(missing).then(pl.lit("identifier_missing"))
    if kind == "external_id":
        too_long = pl.col(ID).str.len_bytes() > field_rules.MAX_EXTERNAL_ID_BYTES
        expr = expr.when(too_long).then(pl.lit("external_id_over_987_bytes"))
    return expr.otherwise(pl.lit(None, pl.String))
