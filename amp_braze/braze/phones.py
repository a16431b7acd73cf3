"""Phone numbers from every country, to E.164, with Google's libphonenumber rules and metadata.

Rules, for a number read in a region (ISO 3166 alpha-2, e.g. ``GB``):

- ``+44 ...`` and the region's own international prefix (``011 44 ...`` in the US, ``00 44 ...`` in
  most of Europe) are international; so is ``00 44 ...`` anywhere, when the number does not read
  as a valid national one. Anything else is a national number of the region; its trunk prefix
  (``0`` in GB, DE, FR, AU, JP, ...) is handled by libphonenumber.
- Extensions (``ext. 12``, ``x12``, ``#12``) are dropped: Braze's ``phone`` holds E.164, which has
  no extension.
- A number that libphonenumber cannot parse, or that is not a *valid* number of its country
  (``is_valid_number``: an assigned range and a right length), has no E.164 value.

How, at any size: only *distinct* numbers are looked at. The distinct texts of a column are reduced
to a canonical key (the text without the punctuation people put between digits, so
``020 7946 0958`` and ``(020) 7946-0958`` are one key); keys made of digits only (with or without a
leading ``+``, the overwhelming majority) are parsed and validated by polars expressions built from
libphonenumber's own metadata (``phone_expressions``), a few expressions per country, in Rust; the
rest (letters, extensions, anything unusual) go to the ``phonenumbers`` package itself, one call per
key. The tests check that both give the same answer for every region. The results are joined back
onto the column in polars: no Python runs per row.
"""

from __future__ import annotations

from functools import cache

import phonenumbers
import polars as pl
from phonenumbers import NumberParseException, PhoneNumberFormat
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from amp_braze.braze import phone_expressions

DEFAULT_REGION = "US"
INVALID_RULE = "phone_invalid"
METADATA_VERSION = phonenumbers.__version__  # which numbers are valid depends on it
# What people put between the digits of a phone number (libphonenumber ignores all of it): white
# space, dashes of every kind, dots, brackets. Not "/" (it may separate two numbers) nor letters
# (extension markers, vanity numbers).
FORMATTING = (
    r"[\s\-\x{2010}-\x{2015}\x{2212}\x{30FC}\x{FF0D}.()\[\]\x{FF08}\x{FF09}\x{FF3B}\x{FF3D}]"
)
_E164 = PhoneNumberFormat.E164
_VECTORISED_FROM = 2_000  # fewer keys than this (of one calling code): phonenumbers is quicker
# Distinct keys at least this share of the values: parse every value where it stands (a unique
# pass and a join back would cost more than the repeats they save).
_DISTINCT_SHARE = 0.8
# Common mistakes in a region setting, with the code meant.
_REGION_HINTS = {"UK": "GB", "EN": "GB", "EL": "GR", "USA": "US", "GER": "DE", "DEU": "DE"}


@cache
def supported_regions() -> frozenset[str]:
    """The regions libphonenumber has a numbering plan for (ISO 3166 alpha-2 codes)."""
    return frozenset(phonenumbers.SUPPORTED_REGIONS)


def region_problem(value: str) -> str | None:
    """What is wrong with a region setting (None: nothing). Lower case is accepted."""
    code = value.strip().upper()
    if code in supported_regions():
        return None
    if code in _REGION_HINTS:
        return f"unknown phone region {value!r}; the ISO 3166 code is {_REGION_HINTS[code]}"
    from amp_braze.braze.field_rules import country_codes

    if code in country_codes():
        return (
            f"{value!r} is a country code, but libphonenumber has no numbering plan for it; "
            "give the region whose numbers its customers use"
        )
    return (
        f"unknown phone region {value!r}; give an ISO 3166 alpha-2 country code such as US, GB, "
        "DE, FR, AU, JP"
    )


def calling_code(region: str) -> int:
    """The country calling code of a region (``GB`` -> 44)."""
    return phonenumbers.country_code_for_region(region.upper())


def regions_of(e164: str) -> tuple[int, tuple[str, ...]] | None:
    """The calling code of an E.164 number and the regions that share it (``+44...`` ->
    ``(44, ("GB", "GG", "IM", "JE"))``); None for text that is not E.164."""
    n = _parsed(e164, "ZZ") if e164.startswith("+") else None
    if n is None:
        return None
    return n.country_code, tuple(COUNTRY_CODE_TO_REGION_CODE.get(n.country_code, ()))


def region_of_calling_code(code: int | str) -> str | None:
    """The main region of a country calling code (``44`` -> ``GB``, ``1`` -> ``US``)."""
    region = phonenumbers.region_code_for_country_code(int(code))
    return None if region in ("ZZ", "001") else region


# -- the reference: libphonenumber itself, one key at a time ------------------------------------


def _parsed(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def parse_key(key: str, region: str) -> tuple[str | None, str | None]:
    """(E.164 when the number is valid, else None; the E.164 form of whatever parsed when it is
    not valid, else None) for one key, by the ``phonenumbers`` package. The second value is what
    identity compares for a number that is not valid: two records with the same mistyped number
    still agree, and one typo away from the right number stays one edit away."""
    n = _parsed(key, region)
    if n is not None and phonenumbers.is_valid_number(n):
        return phonenumbers.format_number(n, _E164), None
    if key.startswith("00") and len(key) > 3:  # 00 as the international prefix, wherever
        m = _parsed("+" + key[2:], region)
        if m is not None and phonenumbers.is_valid_number(m):
            return phonenumbers.format_number(m, _E164), None
    return None, None if n is None else phonenumbers.format_number(n, _E164)


def parse_keys(keys: pl.Series, region: str, least: int = _VECTORISED_FROM) -> pl.DataFrame:
    """parse_key for many keys, in their order: key, e164, parsed. Keys of digits, when there are
    many (``least`` of one calling code), are done by expressions; the rest by the
    phonenumbers package."""
    region = region.upper()
    keys = keys.cast(pl.String).rename("key")
    e164, parsed = _nulls(keys.len()), _nulls(keys.len())  # (scatter writes in place)
    simple = keys.str.contains(phone_expressions.SIMPLE_KEY).fill_null(False)
    every_row = pl.int_range(keys.len(), dtype=pl.UInt32, eager=True)
    slow_rows = every_row  # the rows left to the phonenumbers package
    if simple.sum() >= least and phone_expressions.AVAILABLE:
        all_simple = bool(simple.all())
        rows = every_row if all_simple else simple.arg_true()
        fast = phone_expressions.parse_digit_keys(
            keys if all_simple else keys.gather(rows), region, least
        )
        handled = fast.get_column("handled")
        if all_simple and handled.all():  # all keys of digits, all decided (a customer table)
            return fast.drop("handled")
        done = rows.filter(handled)
        e164 = e164.scatter(done, fast.get_column("e164").filter(handled))
        parsed = parsed.scatter(done, fast.get_column("parsed").filter(handled))
        slow_rows = pl.concat([(~simple).arg_true(), rows.filter(~handled)])
    if slow_rows.len():
        results = [parse_key(k, region) for k in keys.gather(slow_rows).to_list()]
        e164 = e164.scatter(slow_rows, pl.Series([r[0] for r in results], dtype=pl.String))
        parsed = parsed.scatter(slow_rows, pl.Series([r[1] for r in results], dtype=pl.String))
    return pl.DataFrame({"key": keys, "e164": e164, "parsed": parsed})


def _nulls(n: int) -> pl.Series:
    return pl.repeat(None, n, dtype=pl.String, eager=True)


# -- columns ------------------------------------------------------------------------------------


def canonical(c: pl.Expr) -> pl.Expr:
    """The key of a number's text: without the punctuation between its digits."""
    return c.cast(pl.String).str.replace_all(FORMATTING, "")


def _by_text(texts: pl.Series, region: str) -> pl.DataFrame:
    """raw, e164, parsed for distinct texts, all read in one region."""
    distinct = pl.DataFrame({"raw": texts}).with_columns(canonical(pl.col("raw")).alias("key"))
    keys = distinct.get_column("key")
    mapping = parse_keys(keys.filter(keys != "").unique(), region)
    return distinct.join(mapping, on="key", how="left").drop("key")


def lookup(values: pl.Series, region: str = DEFAULT_REGION) -> pl.DataFrame:
    """Per value (same length and order as ``values``): ``e164`` (valid numbers only) and
    ``parsed`` (the E.164 form of a number that parsed but is not valid; null otherwise). Blank
    and null values get nulls in both. When most values are distinct (a customer table), every
    key is parsed where it stands; otherwise each distinct key is parsed once and joined back."""
    keys = values.cast(pl.String).to_frame("raw").select(canonical(pl.col("raw")).alias("key"))
    key = keys.get_column("key")
    if key.approx_n_unique() < _DISTINCT_SHARE * key.len():
        distinct = key.drop_nulls().unique()
        mapping = parse_keys(distinct.filter(distinct != ""), region)
        return keys.join(mapping, on="key", how="left", maintain_order="left").select(
            "e164", "parsed"
        )
    present = (key != "").fill_null(False)
    if present.all():
        return parse_keys(key, region).select("e164", "parsed")
    rows = present.arg_true()
    got = parse_keys(key.gather(rows), region)
    return pl.DataFrame(
        {c: _nulls(key.len()).scatter(rows, got.get_column(c)) for c in ("e164", "parsed")}
    )


def row_regions(regions: pl.Expr, default: str = DEFAULT_REGION) -> pl.Expr:
    """A column of regions as lookup uses them: upper case, common mistakes mapped (UK -> GB),
    blank or unknown -> ``default``."""
    r = regions.cast(pl.String).str.strip_chars().str.to_uppercase().replace(_REGION_HINTS)
    return pl.when(r.is_in(sorted(supported_regions()))).then(r).otherwise(pl.lit(default.upper()))


def lookup_by_row(
    values: pl.Series, regions: pl.Series, default: str = DEFAULT_REGION
) -> pl.DataFrame:
    """``lookup`` with each value read in its own row's region (``row_regions``)."""
    frame = pl.DataFrame({"raw": values.cast(pl.String), "region": regions}).with_columns(
        row_regions(pl.col("region"), default)
    )
    pairs = frame.drop_nulls("raw").unique()
    parts = [
        _by_text(part.get_column("raw"), str(region)).with_columns(pl.lit(region).alias("region"))
        for (region,), part in pairs.group_by("region")
    ]
    schema = {"raw": pl.String, "e164": pl.String, "parsed": pl.String, "region": pl.String}
    mapping = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return frame.join(
        mapping, on=["raw", "region"], how="left", maintain_order="left", nulls_equal=False
    ).select("e164", "parsed")


def e164(values: pl.Series, region: str = DEFAULT_REGION) -> pl.Series:
    """E.164 for each valid number, null for blank, unparseable or invalid ones."""
    return lookup(values, region).get_column("e164").alias(values.name)


def e164_expr(
    c: pl.Expr, region: str = DEFAULT_REGION, region_column: pl.Expr | None = None
) -> pl.Expr:
    """``e164`` as an expression (with ``region_column``: each row in its own region, blank or
    unknown ones in ``region``). The function is handed the whole column at once (not chunks), so
    each distinct number is parsed once."""
    if region_column is None:
        return c.map_batches(lambda s: e164(s, region), return_dtype=pl.String)

    def by_row(s: pl.Series) -> pl.Series:
        v, r = s.struct.field("v"), s.struct.field("r")
        return lookup_by_row(v, r, region).get_column("e164")

    return pl.struct(c.alias("v"), region_column.alias("r")).map_batches(
        by_row, return_dtype=pl.String
    )
