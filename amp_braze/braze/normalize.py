"""Braze field rules as polars expressions: normalise what can be normalised, flag what cannot.

Each rule turns a column into (value, problem): ``value`` is the normalised, still typed value (a Date
stays a Date; payload encoding formats it later), ``problem`` is null when the value is fine, else the
name of the broken rule. A row with any problem is set aside in the rejection table with that rule,
except for the rules that drop only their own value (``field_only``: an invalid phone number): then
that value is not sent and the rest of the row goes on. The constants come from
``amp_braze.braze.field_rules``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import polars as pl

from amp_braze.braze import field_rules, phones
from amp_braze.braze.event_rules import GROUP_STATES


@dataclass(frozen=True)
class Checked:
    value: pl.Expr
    problem: pl.Expr  # a String expression: null = fine, else the rule's name
    # The problem read off the value once it is computed (for a value that is costly to compute
    # twice, such as a parsed phone number): problem_of(the value's column).
    problem_of: Callable[[pl.Expr], pl.Expr] | None = None
    field_only: bool = False  # a problem drops this value only; the row goes on

    def problem_given(self, value: pl.Expr) -> pl.Expr:
        """The problem, given the value already computed as ``value``."""
        return self.problem_of(value) if self.problem_of is not None else self.problem


def _flag(bad: pl.Expr, rule: str) -> pl.Expr:
    return pl.when(bad).then(pl.lit(rule)).otherwise(pl.lit(None, pl.String))


def trimmed(c: pl.Expr) -> pl.Expr:
    """A column as trimmed text, blank as null."""
    s = c.cast(pl.String).str.strip_chars()
    return pl.when(s.str.len_chars() > 0).then(s)


def _max_len(value: pl.Expr, rule: str = "string_over_255_characters") -> Checked:
    return Checked(value, _flag(value.str.len_chars() > field_rules.MAX_STRING_CHARS, rule))


def email(c: pl.Expr) -> Checked:
    v = trimmed(c).str.to_lowercase()
    bad = v.is_not_null() & ~v.str.contains(field_rules.EMAIL_RE.pattern)
    return Checked(v, _flag(bad, "email_format"))


# The rules that set aside a value, not its row (Checked.field_only), by field.
FIELD_ONLY_RULES = {"phone": phones.INVALID_RULE}


def phone(c: pl.Expr, region: str = phones.DEFAULT_REGION) -> Checked:
    """E.164 (``+442079460958``) for a number libphonenumber finds valid, read as a national
    number of ``region`` unless it is written with ``+`` or an international prefix; extensions
    dropped. A number that is not valid is not sent (``phone_invalid``; the rest of the row
    goes on). Each distinct number is parsed once (see ``amp_braze.braze.phones``)."""
    value = phones.e164_expr(c, region)  # white space is dropped with the punctuation

    def problem_of(v: pl.Expr) -> pl.Expr:
        return _flag(v.is_null() & trimmed(c).is_not_null(), phones.INVALID_RULE)

    return Checked(value, problem_of(value), problem_of=problem_of, field_only=True)


def dob(c: pl.Expr, dtype: pl.DataType) -> Checked:
    if dtype == pl.Date:
        v = c
    elif isinstance(dtype, pl.Datetime):
        v = c.dt.date()
    else:
        s = trimmed(c)
        v = pl.coalesce(
            s.str.to_date("%Y-%m-%d", strict=False),
            s.str.to_date("%m/%d/%Y", strict=False),
            s.str.to_date("%Y/%m/%d", strict=False),
        )
        bad = s.is_not_null() & v.is_null()
        v = pl.when(~bad).then(v)
        return Checked(v, _flag(bad, "dob_not_a_date"))
    return Checked(v, _flag(v.dt.year() < 1850, "dob_not_a_date"))


_GENDERS = {
    "m": "M", "male": "M", "man": "M",
    "f": "F", "female": "F", "woman": "F",
    "o": "O", "other": "O", "non-binary": "O", "nonbinary": "O",
    "n": "N", "not applicable": "N", "n/a": "N", "na": "N",
    "p": "P", "prefer not to say": "P", "unknown": "P",
}  # fmt: skip


def gender(c: pl.Expr) -> Checked:
    s = trimmed(c).str.to_lowercase()
    v = s.replace_strict(_GENDERS, default=None, return_dtype=pl.String)
    return Checked(v, _flag(s.is_not_null() & v.is_null(), "gender_value"))


@cache
def _country_names() -> dict[str, str]:
    import pycountry

    names: dict[str, str] = {}
    for c in pycountry.countries:
        names[c.alpha_2.lower()] = c.alpha_2
        names[c.alpha_3.lower()] = c.alpha_2
        for attr in ("name", "official_name", "common_name"):
            if hasattr(c, attr):
                names[getattr(c, attr).lower()] = c.alpha_2
    names |= {"usa": "US", "united states of america": "US", "uk": "GB", "england": "GB"}
    return names


def country(c: pl.Expr) -> Checked:
    s = trimmed(c).str.to_lowercase()
    v = s.replace_strict(_country_names(), default=None, return_dtype=pl.String)
    return Checked(v, _flag(s.is_not_null() & v.is_null(), "country_iso_3166_alpha_2"))


def language(c: pl.Expr) -> Checked:
    s = trimmed(c).str.to_lowercase().str.slice(0, 2)
    full = trimmed(c).str.to_lowercase()
    # Accept "fr" and locale forms such as "fr-CA" / "fr_CA"; nothing else.
    ok = full.str.contains(r"^[a-z]{2}([-_][a-z]{2})?$") & s.is_in(
        sorted(field_rules.language_codes())
    )
    return Checked(pl.when(ok).then(s), _flag(full.is_not_null() & ~ok, "language_iso_639_1"))


def time_zone(c: pl.Expr) -> Checked:
    s = trimmed(c)
    ok = s.is_in(sorted(field_rules.time_zones()))
    return Checked(pl.when(ok).then(s), _flag(s.is_not_null() & ~ok, "time_zone_iana"))


_SUBSCRIPTION = {
    "opted_in": "opted_in", "opted-in": "opted_in", "optedin": "opted_in", "true": "opted_in",
    "subscribed": "subscribed", "unsubscribed": "unsubscribed", "false": "unsubscribed",
    "opted_out": "unsubscribed",
}  # fmt: skip


def subscription(c: pl.Expr, dtype: pl.DataType, rule: str) -> Checked:
    if dtype == pl.Boolean:
        v = pl.when(c).then(pl.lit("opted_in")).when(~c).then(pl.lit("unsubscribed"))
        return Checked(v, pl.lit(None, pl.String))
    s = trimmed(c).str.to_lowercase()
    v = s.replace_strict(_SUBSCRIPTION, default=None, return_dtype=pl.String)
    return Checked(v, _flag(s.is_not_null() & v.is_null(), rule))


def plain_text(c: pl.Expr) -> Checked:
    return _max_len(trimmed(c))


def standard_field(
    name: str, c: pl.Expr, dtype: pl.DataType, phone_region: str = phones.DEFAULT_REGION
) -> Checked:
    """The rule for one standard Braze profile field (``phone_region``: the region national
    phone numbers are read in)."""
    if name == "email":
        return email(c)
    if name == "phone":
        return phone(c, phone_region)
    if name == "dob":
        return dob(c, dtype)
    if name == "gender":
        return gender(c)
    if name == "country":
        return country(c)
    if name == "language":
        return language(c)
    if name == "time_zone":
        return time_zone(c)
    if name in ("email_subscribe", "push_subscribe"):
        return subscription(c, dtype, f"{name}_value")
    return plain_text(c)


class UnsupportedType(TypeError):
    pass


def custom_attribute(name: str, c: pl.Expr, dtype: pl.DataType) -> Checked:
    """Custom attribute types from the polars dtype (Braze: string, number, boolean, time, array, object)."""
    none = pl.lit(None, pl.String)
    if dtype == pl.Boolean or dtype.is_integer():
        return Checked(c, none)
    if dtype.is_float():
        return Checked(c, _flag(c.is_nan() | c.is_infinite(), "not_a_finite_number"))
    if isinstance(dtype, pl.Decimal):
        v = c.cast(pl.Float64)
        return Checked(v, none)
    if dtype == pl.Date:
        return Checked(c, _flag((c.dt.year() < 0) | (c.dt.year() > 3000), "date_year_out_of_range"))
    if isinstance(dtype, pl.Datetime):
        v = (
            c.dt.replace_time_zone("UTC")
            if dtype.time_zone is None
            else c.dt.convert_time_zone("UTC")
        )
        return Checked(v, _flag((v.dt.year() < 0) | (v.dt.year() > 3000), "date_year_out_of_range"))
    if dtype == pl.String or dtype == pl.Categorical or isinstance(dtype, pl.Enum):
        return _max_len(c.cast(pl.String))
    if isinstance(dtype, pl.List | pl.Array):
        v = c.cast(pl.List(dtype.inner)) if isinstance(dtype, pl.Array) else c
        inner = dtype.inner
        if inner == pl.String:
            too_long = v.list.eval(
                pl.element().str.len_chars() > field_rules.MAX_STRING_CHARS
            ).list.any()
            return Checked(v, _flag(too_long, "array_element_over_255_characters"))
        if inner.is_numeric() or inner == pl.Boolean or isinstance(inner, pl.Struct):
            return Checked(v, none)
        raise UnsupportedType(f"column {name!r}: arrays of {inner} cannot be sent to Braze")
    if isinstance(dtype, pl.Struct):
        return Checked(c, none)
    if dtype == pl.Null:
        return Checked(c, none)
    if isinstance(dtype, pl.Duration):
        raise UnsupportedType(
            f"column {name!r} is a duration, which Braze cannot store; send the date itself (and "
            "segment with within_last_days), or whole days: CAST(CURRENT_DATE AS INT) - CAST(d AS INT)"
        )
    raise UnsupportedType(
        f"column {name!r} has type {dtype}, which Braze cannot store; cast it in the profile SQL "
        "(boolean, integer, float, decimal, date, datetime, string, list or struct)"
    )


def group_state(c: pl.Expr, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """A subscription group's state from a column (event_rules.GROUP_STATES): a boolean (true:
    subscribed), or the text ``subscribed`` / ``unsubscribed`` in any case and spacing. Returns
    (state, held): where there is no state, ``held`` is the value's text (neither state: set aside
    and reported) or empty (null: nothing to send); either way Braze keeps what it has."""
    if dtype == pl.Boolean:
        state = pl.when(c).then(pl.lit(GROUP_STATES[0])).when(~c).then(pl.lit(GROUP_STATES[1]))
        text = pl.lit(None, pl.String)
    elif dtype.is_nested():  # a list or an object is never a state
        state, text = pl.lit(None, pl.String), pl.when(c.is_not_null()).then(pl.lit(f"a {dtype}"))
    else:
        text = c.cast(pl.String)
        s = text.str.strip_chars().str.to_lowercase()
        state = pl.when(s.is_in(list(GROUP_STATES))).then(s)
    state = state.cast(pl.String)
    return state, pl.when(state.is_null()).then(text.fill_null(""))
