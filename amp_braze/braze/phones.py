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
libphonenumber's own metadata (international prefix, national prefix rules, country calling codes,
the number patterns and possible lengths of each type), a few expressions per country, in Rust; the
rest (letters, extensions, anything unusual) go to the ``phonenumbers`` package itself, one call per
key. The tests check that both give the same answer for every region. The results are joined back
onto the column in polars: no Python runs per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import phonenumbers
import polars as pl
from phonenumbers import NumberParseException, PhoneNumberFormat
from phonenumbers.phonemetadata import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE, ValidationResult

try:  # internal to phonenumbers: without it, every key goes through phonenumbers.parse
    from phonenumbers.phonenumberutil import _test_number_length
except ImportError:  # pragma: no cover
    _test_number_length = None

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


# -- the same, as polars expressions over libphonenumber's metadata ------------------------------
# A transcription of phonenumbers.parse + is_valid_number + format_number(E164) for keys made of
# ASCII digits with an optional leading "+" (for those, parsing finds no extension, no letters and
# no RFC 3966 parts, so only the steps below apply). Every other key goes to parse_key.

_LENGTH_RESULTS = 32  # lengths up to this are looked up; longer ones are TOO_LONG everywhere
_NOT_STRIPPED = [
    int(ValidationResult.TOO_SHORT),
    int(ValidationResult.IS_POSSIBLE_LOCAL_ONLY),
    int(ValidationResult.INVALID_LENGTH),
]
_TOO_LONG = int(ValidationResult.TOO_LONG)
_DESCS = (  # the number types _number_type_helper tries after the general description
    "premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
    "voicemail", "fixed_line", "mobile",
)  # fmt: skip
_SIMPLE_KEY = r"^\+?[0-9]{3,250}$"
_VECTORISED_FROM = 2_000  # fewer keys than this (of one calling code): phonenumbers is quicker


@dataclass(frozen=True)
class _Plan:
    """What the expressions need of one metadata (a region's, or a non-geographic code's)."""

    country_code: str
    international_prefix: str | None  # a regex, matched at the start
    national_prefix: str | None  # national_prefix_for_parsing, a regex matched at the start
    transform: str | None  # national_prefix_transform_rule in polars' replacement syntax
    groups: int  # capturing groups in national_prefix
    general: str | None  # general_desc's pattern
    general_lengths: frozenset[int]  # empty: any
    by_length: dict[int, str]  # per length, the patterns of the number types of that length
    leading_digits: str | None
    lengths: dict[int, int]  # length -> ValidationResult of _test_number_length


def _compile_plan(md: PhoneMetadata) -> _Plan:
    import re

    npp = md.national_prefix_for_parsing or None
    rule = md.national_prefix_transform_rule or None
    groups = re.compile(npp).groups if npp else 0
    if rule is not None and groups == 0:
        raise ValueError("a transform rule without groups")  # phonenumbers itself would fail
    # A number is of a type when its length is one of the type's (any, if it lists none) and it
    # matches the type's pattern: per length, one alternation of the types of that length.
    by_length: dict[int, list[str]] = {}
    for name in _DESCS:
        d = getattr(md, name)
        if d is None or not d.national_number_pattern:
            continue
        for n in d.possible_length or range(_LENGTH_RESULTS):
            by_length.setdefault(n, []).append(d.national_number_pattern)
    g = md.general_desc
    return _Plan(
        country_code=str(md.country_code),
        international_prefix=md.international_prefix or None,
        national_prefix=npp,
        transform=re.sub(r"\\(\d)", r"${\1}", rule) if rule else None,
        groups=groups,
        general=g.national_number_pattern if g is not None else None,
        general_lengths=frozenset(g.possible_length) if g is not None else frozenset(),
        by_length={n: "|".join(f"(?:{p})" for p in ps) for n, ps in by_length.items()},
        leading_digits=md.leading_digits or None,
        lengths={n: int(_test_number_length("1" * n, md)) for n in range(_LENGTH_RESULTS)},
    )


@cache
def _plan(md_id: str) -> _Plan | None:
    """The plan of a region (``GB``) or of a non-geographic calling code (``+800``)."""
    if md_id.startswith("+"):
        md = PhoneMetadata.metadata_for_nongeo_region(int(md_id[1:]), None)
    else:
        md = PhoneMetadata.metadata_for_region(md_id, None)
    return None if md is None else _compile_plan(md)


@cache
def _main_md_id(cc: str) -> str:
    """The metadata parse switches to for a number with this calling code."""
    region = phonenumbers.region_code_for_country_code(int(cc))
    return f"+{cc}" if region == "001" else region


@cache
def _calling_codes() -> tuple[list[str], ...]:
    codes = {str(c) for c in COUNTRY_CODE_TO_REGION_CODE}
    return tuple(sorted(c for c in codes if len(c) == n) for n in (1, 2, 3))


def _full(c: pl.Expr, pattern: str) -> pl.Expr:
    return c.str.contains(f"^(?:{pattern})$")


def _viable(c: pl.Expr, p: _Plan) -> pl.Expr:
    """_match_national_number(c, general_desc): the pattern only, no length."""
    return _full(c, p.general) if p.general else pl.lit(False)


def _length_result(c: pl.Expr, p: _Plan) -> pl.Expr:
    return c.str.len_chars().replace_strict(p.lengths, default=_TOO_LONG, return_dtype=pl.Int64)


def _strip_national_prefix(df: pl.DataFrame, col: str, p: _Plan) -> pl.Series:
    """_maybe_strip_national_prefix_carrier_code(number, md)[1] of a column."""
    c = pl.col(col)
    if not p.national_prefix or not df.height:
        return df.get_column(col)
    prefix = f"^(?:{p.national_prefix})"
    df = df.select(c, (c.str.contains(prefix) & (c.str.len_chars() > 0)).alias("__hit"))
    hits = df.filter("__hit")
    if not hits.height:
        return df.get_column(col)
    stripped = c.str.replace(prefix, "")
    if p.transform is not None:
        participated = c.str.extract(prefix, p.groups).is_not_null()
        stripped = (
            pl.when(participated).then(c.str.replace(prefix, p.transform)).otherwise(stripped)
        )
    hits = hits.with_columns(stripped.alias("__s"))
    keep = _viable(c, p) & ~_viable(pl.col("__s"), p)
    done = hits.select(pl.when(keep).then(c).otherwise(pl.col("__s")))
    return df.get_column(col).scatter(df.get_column("__hit").arg_true(), done.to_series())


def _valid_in(nsn: pl.Series, p: _Plan) -> pl.Series:
    """_number_type_helper(nsn, md) != UNKNOWN, per value: the general description, and the
    patterns of the number types of the value's length (one pass of each per value)."""
    out = pl.Series(nsn.name, [False] * nsn.len(), dtype=pl.Boolean)
    if not p.general or not nsn.len():
        return out
    n = pl.col("n")
    df = pl.DataFrame({"n": nsn}).with_row_index("i").with_columns(n.str.len_chars().alias("len"))
    for (length,), part in df.group_by("len"):
        types = p.by_length.get(int(length))
        if types is None or (p.general_lengths and length not in p.general_lengths):
            continue
        hit = part.filter(_full(n, p.general) & _full(n, types)).get_column("i")
        out = out.scatter(hit, True)
    return out


def _valid(cc: str, nsn: pl.Series) -> pl.Series:
    """is_valid_number of numbers with this calling code and these national significant
    numbers: the region that claims a number (by its leading digits, else by being valid there;
    the first of the calling code's regions that does) decides."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(int(cc), ())
    if regions == ("001",):
        regions = (f"+{cc}",)
    plans = [p for p in (_plan(r) for r in regions) if p is not None]
    if len(regions) == 1:
        return _valid_in(nsn, plans[0]) if plans else nsn.is_null() & False
    out = pl.Series(nsn.name, [False] * nsn.len(), dtype=pl.Boolean)
    left = pl.DataFrame({"n": nsn}).with_row_index("i")  # not claimed yet
    for p in plans:
        if not left.height:
            break
        if p.leading_digits:
            claims = left.get_column("n").str.contains(f"^(?:{p.leading_digits})")
            mine = left.filter(claims)
            out = out.scatter(mine.get_column("i"), _valid_in(mine.get_column("n"), p))
        else:
            claims = _valid_in(left.get_column("n"), p)
            out = out.scatter(left.get_column("i").filter(claims), True)
        left = left.filter(~claims)
    return out


def _cc_of(full: pl.Expr) -> pl.Expr:
    """_extract_country_code: the first 1-3 digits that are a calling code (none after a 0)."""
    one, two, three = _calling_codes()
    return (
        pl.when(full.str.starts_with("0"))
        .then(pl.lit(None, pl.String))
        .when(full.str.slice(0, 1).is_in(one))
        .then(full.str.slice(0, 1))
        .when(full.str.slice(0, 2).is_in(two))
        .then(full.str.slice(0, 2))
        .when(full.str.slice(0, 3).is_in(three))
        .then(full.str.slice(0, 3))
    )


_UNHANDLED, _FAILED, _GO_ON = 0, 1, 2


def _attempt(keys: pl.Series, region: str, least: int) -> pl.DataFrame:
    """For keys of digits (optionally after one "+"): key, ``handled`` (false: ask parse_key),
    ``form`` (the E.164 form when parsing succeeds) and ``valid``."""
    r = _plan(region)
    assert r is not None
    key, d, full = pl.col("key"), pl.col("d"), pl.col("full")
    df = pl.DataFrame({"key": keys}).with_columns(key.str.strip_prefix("+").alias("d"))
    plus = df.filter(key.str.starts_with("+")).with_columns(d.alias("full"))
    national = df.filter(~key.str.starts_with("+"))
    idd = national.clear().with_columns(full=pl.lit(None, pl.String))
    if r.international_prefix and national.height:
        prefix = f"^(?:{r.international_prefix})"
        national = national.with_columns(
            pl.when(d.str.contains(prefix)).then(d.str.replace(prefix, "")).alias("full")
        )
        stripped = full.is_not_null() & ~full.str.starts_with("0")
        idd = national.filter(stripped)
        national = national.filter(~stripped)
    national = national.with_columns(d.alias("full"))
    parts = []
    # International: "+" or the region's international prefix, then a calling code.
    for frame, source in ((plus, "plus"), (idd, "idd")):
        if not frame.height:
            continue
        frame = frame.with_columns(_cc_of(full).alias("cc"))
        no_code = _UNHANDLED if source == "plus" else _FAILED  # "+": phonenumbers retries
        parts.append(
            frame.select(
                "key",
                "cc",
                full.str.slice(pl.col("cc").str.len_chars()).alias("nnn"),
                pl.when(full.str.len_chars() <= 2)
                .then(_FAILED)
                .when(pl.col("cc").is_null())
                .then(no_code)
                .otherwise(_GO_ON)
                .alias("state"),
            )
        )
    # National, unless it starts with the region's calling code and reads better without it.
    rcc = r.country_code
    starts = national.filter(full.str.starts_with(rcc))
    if starts.height:
        starts = starts.with_columns(full.str.slice(len(rcc)).alias("rest"))
        potential = _strip_national_prefix(starts, "rest", r)
        starts = starts.with_columns(potential.alias("rest"))
        take = (~_viable(full, r) & _viable(pl.col("rest"), r)) | (
            _length_result(full, r) == _TOO_LONG
        )
        starts = starts.with_columns(take.alias("take"))
        parts.append(
            starts.filter("take").select(
                "key", pl.lit(rcc).alias("cc"), pl.col("rest").alias("nnn"), state=_GO_ON
            )
        )
        national = pl.concat(
            [
                national.filter(~full.str.starts_with(rcc)),
                starts.filter(~pl.col("take")).select(national.columns),
            ]
        )
    frames = [p.with_columns(pl.lit(None, pl.String).alias("md")) for p in parts]
    frames.append(
        national.select(
            "key",
            pl.lit(rcc).alias("cc"),
            full.alias("nnn"),
            pl.lit(_GO_ON).alias("state"),
            pl.lit(region).alias("md"),
        )
    )
    every = pl.concat([f.cast({"state": pl.Int32}) for f in frames])
    # A calling code found in the number: parse goes on with its main region's metadata.
    codes = every.filter(pl.col("md").is_null() & (pl.col("state") == _GO_ON))
    ids = {c: _main_md_id(c) for c in codes.get_column("cc").unique().to_list()}
    every = every.with_columns(
        pl.coalesce("md", pl.col("cc").replace_strict(ids, default=None, return_dtype=pl.String))
    )
    out = [
        every.filter(pl.col("state") != _GO_ON).select(
            "key",
            (pl.col("state") == _FAILED).alias("handled"),
            pl.lit(None, pl.String).alias("form"),
            pl.lit(False).alias("valid"),
        )
    ]
    going = every.filter(pl.col("state") == _GO_ON)
    for (code, md_id), part in going.group_by("cc", "md"):
        out.append(_finish(part, str(code), str(md_id), least))
    return pl.concat(out)


def _finish(part: pl.DataFrame, cc: str, md_id: str, least: int) -> pl.DataFrame:
    """The rest of parse (national prefix, lengths) and is_valid_number, for one calling code
    and metadata."""
    p = _plan(md_id)
    nnn, nsn = pl.col("nnn"), pl.col("nsn")
    if p is None or part.height < least:  # few: phonenumbers is quicker
        return part.select(
            "key",
            pl.lit(False).alias("handled"),
            pl.lit(None, pl.String).alias("form"),
            pl.lit(False).alias("valid"),
        )
    part = part.with_columns(_strip_national_prefix(part, "nnn", p).alias("potential"))
    keep = _length_result(pl.col("potential"), p).is_in(_NOT_STRIPPED)
    part = part.with_columns(pl.when(keep).then(nnn).otherwise(pl.col("potential")).alias("nsn"))
    ok = (nnn.str.len_chars() >= 2) & (nsn.str.len_chars() >= 2) & (nsn.str.len_chars() <= 17)
    part = part.with_columns(ok.alias("ok"))
    valid = pl.Series("valid", [False] * part.height, dtype=pl.Boolean)
    fine = part.get_column("ok").arg_true()
    valid = valid.scatter(fine, _valid(cc, part.get_column("nsn").gather(fine)))
    return part.select(
        "key",
        pl.lit(True).alias("handled"),
        pl.when("ok").then(pl.concat_str(pl.lit("+" + cc), nsn)).alias("form"),
        valid,
    )


def _vectorised(keys: pl.Series, region: str, least: int) -> pl.DataFrame:
    """parse_key for keys of digits: key, handled, e164, parsed."""
    first = _attempt(keys, region, least)
    retry = first.filter(
        pl.col("handled") & ~pl.col("valid") & pl.col("key").str.contains(r"^00[0-9]{2,}$")
    ).get_column("key")
    tail = pl.col("key").str.slice(2).alias("tail")
    if retry.len():
        second = _attempt("+" + retry.str.slice(2), region, least).select(
            pl.col("key").str.slice(1).alias("tail"),
            pl.col("handled").alias("handled2"),
            pl.col("valid").alias("valid2"),
            pl.col("form").alias("form2"),
        )
    else:
        second = pl.DataFrame(
            schema={"tail": pl.String, "handled2": pl.Boolean, "valid2": pl.Boolean,
                    "form2": pl.String}
        )  # fmt: skip
    first = first.with_columns(pl.when(pl.col("key").str.starts_with("00")).then(tail)).join(
        second, on="tail", how="left"
    )
    valid2 = pl.col("valid2").fill_null(False)
    return first.select(
        "key",
        (pl.col("handled") & pl.col("handled2").fill_null(True)).alias("handled"),
        pl.when(pl.col("valid"))
        .then(pl.col("form"))
        .when(valid2)
        .then(pl.col("form2"))
        .alias("e164"),
        pl.when(~pl.col("valid") & ~valid2).then(pl.col("form")).alias("parsed"),
    )


def parse_keys(keys: pl.Series, region: str, least: int = _VECTORISED_FROM) -> pl.DataFrame:
    """parse_key for many distinct keys: key, e164, parsed. Keys of digits, when there are
    many (``least`` of one calling code), are done by expressions; the rest by the
    phonenumbers package."""
    region = region.upper()
    keys = keys.cast(pl.String).rename("key")
    simple = keys.str.contains(_SIMPLE_KEY)
    if simple.sum() >= least and _test_number_length is not None:
        fast = _vectorised(keys.filter(simple), region, least)
        done = fast.filter(pl.col("handled")).drop("handled")
        others = pl.concat([keys.filter(~simple), fast.filter(~pl.col("handled"))["key"]])
    else:
        done, others = (
            pl.DataFrame(schema={"key": pl.String, "e164": pl.String, "parsed": pl.String}),
            keys,
        )
    results = [parse_key(k, region) for k in others.to_list()]
    slow = pl.DataFrame(
        {"key": others, "e164": [r[0] for r in results], "parsed": [r[1] for r in results]},
        schema={"key": pl.String, "e164": pl.String, "parsed": pl.String},
    )
    return pl.concat([done, slow])


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
    and null values get nulls in both. Each distinct key is parsed once."""
    raw = values.cast(pl.String).rename("raw")
    by_raw = _by_text(raw.drop_nulls().unique(), region)
    return (
        raw.to_frame()
        .join(by_raw, on="raw", how="left", maintain_order="left")
        .select("e164", "parsed")
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
