"""libphonenumber's parse and validation as polars expressions, for phone keys made of digits.

A transcription of ``phonenumbers.parse`` + ``is_valid_number`` + ``format_number(E164)`` for keys
made of ASCII digits with an optional leading "+" (for those, parsing finds no extension, no
letters and no RFC 3966 parts, so only the steps below apply), built from libphonenumber's own
metadata: international prefix, national prefix rules, country calling codes, the number
patterns and possible lengths of each type, a few expressions per country, run in Rust. Every
other key goes to ``amp_braze.braze.phones.parse_key``; the tests check that both give the same
answer for every region.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import phonenumbers
import polars as pl
from phonenumbers.phonemetadata import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE, ValidationResult

try:  # internal to phonenumbers: without it, every key goes through phonenumbers.parse
    from phonenumbers.phonenumberutil import _test_number_length
except ImportError:  # pragma: no cover
    _test_number_length = None

AVAILABLE = _test_number_length is not None

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
SIMPLE_KEY = r"^\+?[0-9]{3,250}$"  # the keys these expressions handle
_ROW = "__row"  # a key's position in what it was given
_PREFIX_DIGITS = 6  # leading digits matched on distinct prefixes when none is longer than this


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
def _codes_by_prefix() -> dict[str, str]:
    """_extract_country_code for every text of one to three digits: the calling code it starts
    with (the first one to three digits that are one; none after a 0). A number's code depends on
    its first three digits only, so one lookup of them finds it."""
    codes = {str(c) for c in COUNTRY_CODE_TO_REGION_CODE}
    out: dict[str, str] = {}
    for width in (1, 2, 3):
        for i in range(10**width):
            text = f"{i:0{width}d}"
            found = next((text[:n] for n in (1, 2, 3) if text[:n] in codes), None)
            if found is not None and not text.startswith("0"):
                out[text] = found
    return out


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


def _falses(name: str, n: int) -> pl.Series:
    return pl.repeat(False, n, dtype=pl.Boolean, eager=True).alias(name)


def _valid_in(nsn: pl.Series, p: _Plan) -> pl.Series:
    """_number_type_helper(nsn, md) != UNKNOWN, per value: the general description, and the
    patterns of the number types of the value's length (one pass of each per value)."""
    out = _falses(nsn.name, nsn.len())
    if not p.general or not nsn.len():
        return out
    n = pl.col("n")
    lengths = nsn.str.len_chars()
    if lengths.min() == lengths.max():  # one length (the usual case): no split
        types = _types(p, int(lengths[0]))
        if types is None:
            return out
        return nsn.to_frame("n").select(_full(n, p.general) & _full(n, types)).to_series()
    df = pl.DataFrame({"n": nsn, "len": lengths}).with_row_index("i")
    for (length,), part in df.group_by("len"):
        types = _types(p, int(length))
        if types is not None:
            out = out.scatter(part.filter(_full(n, p.general) & _full(n, types))["i"], True)
    return out


def _types(p: _Plan, length: int) -> str | None:
    """The pattern of the number types of this length (None: no number has this length)."""
    if p.general_lengths and length not in p.general_lengths:
        return None
    return p.by_length.get(length)


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
    out = _falses(nsn.name, nsn.len())
    left = pl.DataFrame({"n": nsn}).with_row_index("i")  # not claimed yet
    i = 0
    while i < len(plans) and left.height:
        if not plans[i].leading_digits:
            claims = _valid_in(left.get_column("n"), plans[i])
            out = out.scatter(left.get_column("i").filter(claims), True)
            left = left.filter(~claims)
            i += 1
            continue
        # Consecutive regions that claim by leading digits: one pass finds, per number, the
        # first of them whose leading digits it starts with (alternatives match first-listed
        # first, as the loop over regions would).
        run = []
        while i < len(plans) and plans[i].leading_digits:
            run.append(plans[i])
            i += 1
        left = left.with_columns(_claimant(left.get_column("n"), run).alias("by"))
        mine = left.filter(pl.col("by").is_not_null())
        out = out.scatter(mine.get_column("i"), _valid_claimed(mine, run))
        left = left.filter(pl.col("by").is_null()).drop("by")
    return out


def _valid_claimed(mine: pl.DataFrame, run: list[_Plan]) -> pl.Series:
    """_valid_in of each number ``n`` in the plan its ``by`` names, in two regex passes for all
    the plans: each number is tagged with its plan and length, and each (plan, length) present
    adds one tagged alternative (the patterns of the types of that length) to the pass."""
    n, by, length = pl.col("n"), pl.col("by"), pl.col("len")
    mine = mine.select(n, by, n.str.len_chars().alias("len"))
    general, types = [], []
    for j, size in mine.select(by, length).unique().sort(by, length).iter_rows():
        p = run[j]
        pattern = _types(p, size) if p.general else None
        if pattern is not None:
            general.append(f"R{j}L{size}:(?:{p.general})")
            types.append(f"R{j}L{size}:(?:{pattern})")
    if not general:
        return _falses("n", mine.height)
    tagged = pl.format("R{}L{}:{}", by, length, n)
    return mine.select(
        _full(tagged, "|".join(general)) & _full(tagged, "|".join(types))
    ).to_series()


def _claimant(n: pl.Series, run: list[_Plan]) -> pl.Series:
    """The index in ``run`` of the first plan whose leading digits start each number (null:
    none). When no plan's leading digits can match more than a few digits, the regex runs on
    the distinct prefixes of that many digits only."""
    alternatives = "|".join(f"(?P<g{j}>{p.leading_digits})" for j, p in enumerate(run))

    def first(c: pl.Expr) -> pl.Expr:
        groups = c.str.extract_groups(f"^(?:{alternatives})")
        return pl.coalesce(
            pl.when(groups.struct.field(f"g{j}").is_not_null()).then(pl.lit(j, pl.UInt32))
            for j in range(len(run))
        )

    width = _widest(tuple(p.leading_digits or "" for p in run))
    if width is None:
        return n.to_frame("n").select(first(pl.col("n"))).to_series()
    prefixes = n.str.slice(0, width)
    distinct = prefixes.unique().to_frame("p").with_columns(first(pl.col("p")).alias("by"))
    return prefixes.replace_strict(distinct["p"], distinct["by"], return_dtype=pl.UInt32)


@cache
def _widest(patterns: tuple[str, ...]) -> int | None:
    """The most characters any of these patterns can match (None: more than a few, or a pattern
    that looks past its match)."""
    import re._parser as sre_parse  # Python's own regex parser: the widths of a pattern

    most = 0
    for p in patterns:
        if "$" in p or "\\b" in p or "(?=" in p or "(?!" in p:
            return None
        most = max(most, sre_parse.parse(p).getwidth()[1])
    return most if most <= _PREFIX_DIGITS else None


def _cc_of(full: pl.Expr) -> pl.Expr:
    """_extract_country_code: the first 1-3 digits that are a calling code (none after a 0)."""
    return full.str.slice(0, 3).replace_strict(
        _codes_by_prefix(), default=None, return_dtype=pl.String
    )


_UNHANDLED, _FAILED, _GO_ON = 0, 1, 2


def _attempt(keys: pl.Series, region: str, least: int) -> pl.DataFrame:
    """For keys of digits (optionally after one "+"), in their order: key, ``handled`` (false:
    ask parse_key), ``form`` (the E.164 form when parsing succeeds) and ``valid``. Each key
    carries its position (``_ROW``) through the splits, so the answers are put back in order
    without a join on the text."""
    r = _plan(region)
    assert r is not None
    key, d, full = pl.col("key"), pl.col("d"), pl.col("full")
    df = (
        pl.DataFrame({"key": keys})
        .with_row_index(_ROW)
        .with_columns(key.str.strip_prefix("+").alias("d"))
    )
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
                _ROW,
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
                _ROW, "key", pl.lit(rcc).alias("cc"), pl.col("rest").alias("nnn"), state=_GO_ON
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
            _ROW,
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
            _ROW,
            "key",
            (pl.col("state") == _FAILED).alias("handled"),
            pl.lit(None, pl.String).alias("form"),
            pl.lit(False).alias("valid"),
        )
    ]
    going = every.filter(pl.col("state") == _GO_ON)
    codes = going.select(pl.col("cc", "md").unique(maintain_order=True).implode()).row(0)
    if len(codes[0]) == 1 and len(codes[1]) == 1:  # one country (the usual case): no split
        out.append(_finish(going, codes[0][0], codes[1][0], least))
    else:
        for (code, md_id), part in going.group_by("cc", "md"):
            out.append(_finish(part, str(code), str(md_id), least))
    return pl.concat(out).sort(_ROW).drop(_ROW)


def _finish(part: pl.DataFrame, cc: str, md_id: str, least: int) -> pl.DataFrame:
    """The rest of parse (national prefix, lengths) and is_valid_number, for one calling code
    and metadata."""
    p = _plan(md_id)
    nnn, nsn = pl.col("nnn"), pl.col("nsn")
    if p is None or part.height < least:  # few: phonenumbers is quicker
        return part.select(
            _ROW,
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
    valid = _falses("valid", part.height)
    fine = part.get_column("ok").arg_true()
    valid = valid.scatter(fine, _valid(cc, part.get_column("nsn").gather(fine)))
    return part.select(
        _ROW,
        "key",
        pl.lit(True).alias("handled"),
        pl.when("ok").then(pl.concat_str(pl.lit("+" + cc), nsn)).alias("form"),
        valid,
    )


def parse_digit_keys(keys: pl.Series, region: str, least: int) -> pl.DataFrame:
    """``phones.parse_key`` for keys of digits (``SIMPLE_KEY``), in their order: key, handled
    (false: not decided here, ask ``parse_key``), e164, parsed. Calling codes with fewer than
    ``least`` keys are left undecided (phonenumbers is quicker for a few)."""
    first = _attempt(keys, region, least)
    retry = first.filter(
        pl.col("handled") & ~pl.col("valid") & pl.col("key").str.contains(r"^00[0-9]{2,}$")
    ).get_column("key")
    if not retry.len():  # the usual case: nothing to read again after "00"
        return first.select(
            "key",
            "handled",
            pl.when(pl.col("valid")).then(pl.col("form")).alias("e164"),
            pl.when(~pl.col("valid")).then(pl.col("form")).alias("parsed"),
        )
    second = _attempt("+" + retry.unique().str.slice(2), region, least).select(
        pl.col("key").str.slice(1).alias("tail"),
        pl.col("handled").alias("handled2"),
        pl.col("valid").alias("valid2"),
        pl.col("form").alias("form2"),
    )
    tail = pl.when(pl.col("key").str.starts_with("00")).then(pl.col("key").str.slice(2))
    first = first.with_columns(tail.alias("tail")).join(
        second, on="tail", how="left", maintain_order="left"
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
