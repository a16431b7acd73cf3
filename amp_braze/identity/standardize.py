"""Identity fields normalised for comparison: one polars expression per kind of field.

Email and phone reuse Braze's field rules (lower-cased email; E.164 phone, national numbers read in
the feed's ``phone_region``), so a record links on the same value the sync would send; a phone
number that is not valid still compares by the E.164 form libphonenumber reads into it. Names lose case, accents and punctuation, and gain a canonical form
from a nickname table (``nicknames.csv``: Bob -> robert); addresses get their common street words
abbreviated one way; dates become ISO ``YYYY-MM-DD`` text. Known placeholder values
(test@test.com, 0000000000, ...) become null: they say nothing about who a record is.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import polars as pl

from amp_braze.braze import normalize, phones

NICKNAMES = Path(__file__).with_name("nicknames.csv")
CANONICAL_SUFFIX = "__canonical"  # name columns: the nickname table's full name

# Placeholders seen in real customer feeds; identity.junk_values adds a brand's own.
JUNK_VALUES = (
    "test@test.com",
    "test@example.com",
    "noemail@noemail.com",
    "none@none.com",
    "no@email.com",
    "na@na.com",
    "unknown",
    "none",
    "n/a",
    "na",
    "null",
    "test",
)
# 0000000000, +11111111111, +440000000000: after a calling code, one digit seven times or more
# (the regex engine has no \1)
_REPEATED_DIGITS = r"^\+?[0-9]{0,3}(" + "|".join(f"{d}{{7,}}" for d in range(10)) + ")$"
_SEQUENTIAL = ("1234567890", "0123456789", "+11234567890")

_ADDRESS_WORDS = {
    "street": "st",
    "avenue": "ave",
    "road": "rd",
    "drive": "dr",
    "lane": "ln",
    "boulevard": "blvd",
    "court": "ct",
    "place": "pl",
    "terrace": "ter",
    "apartment": "apt",
    "suite": "ste",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
}


@cache
def nickname_map() -> dict[str, str]:
    table = pl.read_csv(NICKNAMES)
    return dict(zip(table["nickname"], table["name"], strict=True))


def _letters(c: pl.Expr) -> pl.Expr:
    """Lower case, accents stripped, anything but letters, digits and single spaces removed."""
    s = (
        normalize.trimmed(c)
        .str.normalize("NFKD")
        .str.replace_all(r"\p{M}", "")
        .str.to_lowercase()
        .str.replace_all(r"[^a-z0-9 ]", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )
    return pl.when(s.str.len_chars() > 0).then(s)


def name(c: pl.Expr) -> pl.Expr:
    return _letters(c)


def canonical_name(normalised: pl.Expr) -> pl.Expr:
    return normalised.replace(nickname_map())


def email(c: pl.Expr) -> pl.Expr:
    checked = normalize.email(c)
    return pl.when(checked.problem.is_null()).then(checked.value)


def phone(
    c: pl.Expr, region: str = phones.DEFAULT_REGION, region_column: pl.Expr | None = None
) -> pl.Expr:
    """E.164 (national numbers read in ``region``, or in each row's ``region_column``); for a
    number that is not valid, the E.164 form libphonenumber reads into it; placeholders
    (0000000, 1234567890) null."""

    def compare(s: pl.Series) -> pl.Series:  # the whole column: each number parsed once
        if region_column is None:
            found = phones.lookup(s, region)
        else:
            found = phones.lookup_by_row(s.struct.field("v"), s.struct.field("r"), region)
        v = pl.col("v")
        junk = v.str.contains(_REPEATED_DIGITS) | v.is_in(_SEQUENTIAL)
        return (
            found.select(pl.coalesce("e164", "parsed").alias("v"))
            .select(pl.when(~junk & (v.str.len_chars() >= 7)).then(v))
            .to_series()
            .alias(s.name)
        )

    if region_column is not None:
        c = pl.struct(c.alias("v"), region_column.alias("r"))
    return c.map_batches(compare, return_dtype=pl.String)


def date(c: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    return normalize.dob(c, dtype).value.cast(pl.String)


def address(c: pl.Expr) -> pl.Expr:
    s = _letters(c)
    for word, short in _ADDRESS_WORDS.items():
        s = s.str.replace_all(rf"\b{word}\b", short)
    return s


def code(c: pl.Expr) -> pl.Expr:
    """Postcodes and ids: upper case, letters and digits only ("sw1a 1aa" -> "SW1A1AA")."""
    s = normalize.trimmed(c).str.to_uppercase().str.replace_all(r"[^A-Z0-9]", "")
    return pl.when(s.str.len_chars() > 0).then(s)


def text(c: pl.Expr) -> pl.Expr:
    s = normalize.trimmed(c).str.to_lowercase().str.replace_all(r"\s+", " ")
    return s


def field(
    column: str,
    kind: str,
    dtype: pl.DataType,
    phone_region: str = phones.DEFAULT_REGION,
    phone_region_column: str | None = None,
) -> pl.Expr:
    """The normalised comparison value of one column, by its configured kind (``phone_region``:
    the region of the feed's national phone numbers; ``phone_region_column``: the column that
    names each row's, if any)."""
    c = pl.col(column)
    exprs = {
        "name": lambda: name(c),
        "email": lambda: email(c),
        "phone": lambda: phone(
            c, phone_region, pl.col(phone_region_column) if phone_region_column else None
        ),
        "date": lambda: date(c, dtype),
        "postcode": lambda: code(c),
        "address": lambda: address(c),
        "id": lambda: code(c),
        "exact": lambda: normalize.trimmed(c),
        "text": lambda: text(c),
    }
    return exprs[kind]()


def without_junk(value: pl.Expr, junk: tuple[str, ...]) -> pl.Expr:
    """Null for a placeholder value, compared case-insensitively."""
    known = [v.lower() for v in JUNK_VALUES + junk]
    return pl.when(~value.str.to_lowercase().is_in(known)).then(value)
