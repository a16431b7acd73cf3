"""braze_customer_attributes: the profile SQL's result, renamed, checked against Braze's field rules.

Output: one typed row per user (identifier columns, the internal key ``__id``, standard fields and
custom attributes, normalised), and a rejection table (one row per broken rule: ``__id``, identifier,
column, value, rule). A row that breaks a rule is set aside whole and retried on the next run; the
rest go on. A rule that concerns one value only (an invalid phone number) sets aside that value, not
the row: the row is accepted without it (null) and with the value's text in ``__held_<column>``, so
the sync leaves what Braze holds for that attribute alone (a null would unset it) and the
rejection table lists it (column, value, rule) like any other. Columns whose name starts with ``_`` are helpers: available to
segments, never sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

import polars as pl

from amp_braze.braze import field_rules, normalize
from amp_braze.braze.identifiers import ID, id_expr, id_problem, identifier_columns
from amp_braze.config import BrazeConfig

log = logging.getLogger(__name__)

REJECTION_SCHEMA = pl.Schema(
    {
        ID: pl.String,
        "identifier": pl.String,
        "column": pl.String,
        "value": pl.String,
        "rule": pl.String,
    }
)


class ProfileSqlError(ValueError):
    """The profile SQL's result cannot become Braze attributes (a config-level problem)."""


@dataclass
class Attributes:
    table: pl.DataFrame  # accepted rows (values set aside by a field rule: null, __held_<col> set)
    row_rejections: pl.DataFrame  # REJECTION_SCHEMA: the rules broken by rows set aside whole
    input_rows: int
    standard_fields: list[str]
    custom_attributes: list[str]
    helpers: list[str]
    warnings: list[str] = field(default_factory=list)
    identifier_columns: list[str] = field(default_factory=list)

    @cached_property
    def rejections(self) -> pl.DataFrame:
        """REJECTION_SCHEMA: every rule broken, by the rows set aside and by the values set aside
        in accepted rows. The latter are read off the table's ``__held_`` columns, so a table
        rebuilt in part (the incremental build reuses unchanged rows) still reports them all."""
        held = [c for c in self.table.columns if field_rules.is_held_column(c)]
        if not held:
            return self.row_rejections
        ident = pl.concat_str(
            [pl.col(c).cast(pl.String) for c in self.identifier_columns], separator="/"
        )
        parts = [self.row_rejections]
        for col in held:
            attr = col[len(field_rules.HELD_PREFIX) :]
            # Only the columns read here are filtered (filtering the table copies every column).
            needed = self.table.select(ID, *self.identifier_columns, col)
            parts.append(
                needed.filter(pl.col(col).is_not_null()).select(
                    pl.col(ID),
                    ident.alias("identifier"),
                    pl.lit(attr).alias("column"),
                    pl.col(col).alias("value"),
                    pl.lit(normalize.FIELD_ONLY_RULES[attr]).alias("rule"),
                )
            )
        return pl.concat(parts).cast(dict(REJECTION_SCHEMA))

    @property
    def rejected_rows(self) -> int:
        return self.input_rows - self.table.height

    @property
    def rejected_share(self) -> float:
        return self.rejected_rows / self.input_rows if self.input_rows else 0.0


def is_helper(column: str) -> bool:
    return column.startswith("_")


def sent_columns(table: pl.DataFrame | pl.Schema, kind: str) -> list[str]:
    """The attribute columns a sync manages (not identifiers, the key, or helper columns)."""
    names = table.columns if isinstance(table, pl.DataFrame) else list(table)
    skip = set(identifier_columns(kind)) | {ID}
    return [c for c in names if c not in skip and not is_helper(c)]


def _check_columns(df: pl.DataFrame, cfg: BrazeConfig) -> list[str]:
    warnings = []
    for col in identifier_columns(cfg.identifier):
        if col not in df.columns:
            raise ProfileSqlError(
                f"profile_sql: the result has no {col!r} column, which braze.identifier "
                f"({cfg.identifier}) needs; it has {', '.join(df.columns)}"
            )
    ids = set(identifier_columns(cfg.identifier))
    for col in df.columns:
        if col in ids or is_helper(col):
            continue
        if col in field_rules.STANDARD_FIELDS and col not in field_rules.SYNCABLE_STANDARD_FIELDS:
            raise ProfileSqlError(
                f"profile_sql: column {col!r} is a Braze field amp_braze does not sync "
                f"(it syncs {', '.join(field_rules.SYNCABLE_STANDARD_FIELDS)})"
            )
        shadowed = field_rules.shadowed_standard_field(col)
        if shadowed:
            msg = (
                f"profile_sql: custom attribute {col!r} duplicates Braze's standard field {shadowed!r}; "
                f"name the column {shadowed} so Braze fills its own field (or set braze.shadowed_fields: warn)"
            )
            if cfg.shadowed_fields == "error":
                raise ProfileSqlError(msg)
            warnings.append(msg)
            log.warning(msg)
        if len(col) > field_rules.MAX_STRING_CHARS or " " in col or col.startswith("$"):
            raise ProfileSqlError(f"profile_sql: {col!r} is not a valid Braze attribute name")
    return warnings


def build_attributes(
    raw: pl.DataFrame, cfg: BrazeConfig, phone_region: str | None = None
) -> Attributes:
    """Rename, check and normalise the profile SQL's result. National phone numbers are read in
    ``phone_region`` (default: the destination's, which is the top-level ``phone_region``)."""
    region = phone_region or cfg.phone_region
    missing = [src for src in cfg.columns if src not in raw.columns]
    if missing:
        raise ProfileSqlError(
            f"braze.columns.{missing[0]}: the profile SQL returns no column {missing[0]!r}"
        )
    df = raw.rename(cfg.columns)
    warnings = _check_columns(df, cfg)
    kind = cfg.identifier
    id_cols = identifier_columns(kind)
    attrs = sent_columns(df, kind)
    helpers = [c for c in df.columns if is_helper(c)]
    schema = df.schema

    checked: dict[str, normalize.Checked] = {}
    for col in attrs + helpers:
        c, dtype = pl.col(col), schema[col]
        try:
            if col in field_rules.STANDARD_FIELDS:
                checked[col] = normalize.standard_field(col, c, dtype, region)
            elif is_helper(col):
                checked[col] = normalize.Checked(c, pl.lit(None, pl.String))
            else:
                checked[col] = normalize.custom_attribute(col, c, dtype)
        except normalize.UnsupportedType as e:
            raise ProfileSqlError(f"profile_sql: {e}") from None

    with_id = df.with_columns(id_expr(kind))
    dup = pl.col(ID).is_duplicated() & pl.col(ID).is_not_null()
    id_rule = (
        pl.when(dup)
        .then(pl.lit("identifier_duplicate"))
        .otherwise(id_problem(kind))
        .alias("__p_" + ID)
    )
    # Values first, then the problems (some are read off the value: a phone is parsed once).
    work = with_id.with_columns(
        [id_rule] + [ch.value.alias(f"__v_{col}") for col, ch in checked.items()]
    ).with_columns(
        ch.problem_given(pl.col(f"__v_{col}")).alias(f"__p_{col}") for col, ch in checked.items()
    )
    field_only = [col for col, ch in checked.items() if ch.field_only]
    problem_cols = ["__p_" + ID] + [f"__p_{col}" for col in checked if col not in field_only]
    bad = pl.any_horizontal([pl.col(p).is_not_null() for p in problem_cols])
    # A value set aside in an accepted row: its text in __held_<col> (null: nothing set aside).
    held = [
        pl.when(pl.col(f"__p_{c}").is_not_null())
        .then(_as_text(pl.col(c), schema[c]))
        .alias(field_rules.held_column(c))
        for c in field_only
    ]

    accepted = work.filter(~bad).select(
        [pl.col(c) for c in id_cols]
        + [pl.col(ID)]
        + [pl.col(f"__v_{c}").alias(c) for c in checked]
        + held
    )
    rejected = work.filter(bad)
    ident = pl.concat_str([pl.col(c).cast(pl.String) for c in id_cols], separator="/").alias(
        "identifier"
    )
    parts = []
    for col in [ID] + list(checked):
        source_col = id_cols[0] if col == ID else col
        p = f"__p_{col}"
        parts.append(
            rejected.filter(pl.col(p).is_not_null()).select(
                pl.col(ID),
                ident,
                pl.lit("identifier" if col == ID else col).alias("column"),
                _as_text(pl.col(source_col), schema[source_col]).alias("value"),
                pl.col(p).alias("rule"),
            )
        )
    rejections = pl.concat(parts) if parts else pl.DataFrame(schema=REJECTION_SCHEMA)
    return Attributes(
        table=accepted,
        row_rejections=rejections.cast(dict(REJECTION_SCHEMA)),
        input_rows=df.height,
        standard_fields=[c for c in attrs if c in field_rules.STANDARD_FIELDS],
        custom_attributes=[c for c in attrs if c not in field_rules.STANDARD_FIELDS],
        helpers=helpers,
        warnings=warnings,
        identifier_columns=id_cols,
    )


def _as_text(c: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Struct):
        return c.struct.json_encode()
    if isinstance(dtype, pl.List | pl.Array):
        items = c.cast(pl.List(dtype.inner)).list.eval(pl.element().cast(pl.String)).list.join(", ")
        return pl.concat_str(pl.lit("["), items, pl.lit("]"))
    return c.cast(pl.String).str.slice(0, 300)
