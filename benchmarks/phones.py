"""Phone normalisation: the Braze ``phone`` rule over N values with D distinct ones, libphonenumber's
rules (amp_braze.braze.normalize.phone) against the rule it replaced (North American numbers only, a
polars regex expression, copied below), on the same column in the same process.

The values are what a US feed holds: national numbers written five ways, ``+1`` and ``1-`` forms, a
few extensions, international numbers (``+44``, ``0044``, ``011 49``, ``+33``) and junk. Every
distinct value is a distinct number (each written one way), the worst case for the canonical-key
cache, which only helps when one number is written several ways.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import numpy as np
import polars as pl

from amp_braze.braze import field_rules, normalize, phone_expressions, phones
from benchmarks.harness import Row, peak_rss_mb, report


# -- the rule before libphonenumber (amp_braze.braze.normalize.phone until issue 22) --------------
def old_phone(c: pl.Expr, default_country_code: str = "1") -> normalize.Checked:
    """E.164 where it can be: '+' and 8-15 digits; 00-prefixed international; national numbers of
    10 digits (or 11 starting with the country code) get the default country code. Anything else
    is sent as given (trimmed), since Braze accepts any phone string."""
    raw = normalize.trimmed(c)
    digits = raw.str.replace_all(r"[^0-9]", "")
    cc = default_country_code
    e164 = (
        pl.when(raw.str.starts_with("+"))
        .then(pl.concat_str(pl.lit("+"), digits))
        .when(digits.str.starts_with("00"))
        .then(pl.concat_str(pl.lit("+"), digits.str.slice(2)))
        .when(digits.str.len_chars() == 10)
        .then(pl.concat_str(pl.lit(f"+{cc}"), digits))
        .when((digits.str.len_chars() == 10 + len(cc)) & digits.str.starts_with(cc))
        .then(pl.concat_str(pl.lit("+"), digits))
    )
    v = pl.when(e164.str.contains(field_rules.E164_RE.pattern)).then(e164).otherwise(raw)
    return normalize.Checked(
        v,
        pl.when(v.str.len_chars() > field_rules.MAX_STRING_CHARS)
        .then(pl.lit("string_over_255_characters"))
        .otherwise(pl.lit(None, pl.String)),
    )


# Area codes in use (a number in an unassigned one is not valid, and is not what feeds hold).
AREA_CODES = [
    "201", "202", "206", "212", "213", "214", "215", "303", "305", "310", "312", "404", "415",
    "503", "512", "602", "617", "646", "702", "713", "718", "773", "786", "801", "808", "818",
    "901", "914", "917", "919", "416", "604",  # the last two: Toronto, Vancouver (+1, Canada)
]  # fmt: skip


def make_values(n: int, distinct: int, seed: int = 22) -> pl.Series:
    """``n`` phone texts drawn from ``distinct`` different ones (see the module docstring)."""
    rng = np.random.default_rng(seed)
    m = int(distinct * 1.1) + 1000  # a few collide; enough remain after unique()
    area = pl.Series(AREA_CODES).gather(pl.Series(rng.integers(0, len(AREA_CODES), m)))
    exch = pl.Series(rng.integers(200, 1000, m)).cast(pl.String)
    line = pl.Series(rng.integers(0, 10_000, m)).cast(pl.String).str.zfill(4)
    local8 = pl.Series(rng.integers(0, 100_000_000, m)).cast(pl.String).str.zfill(8)
    kind = pl.Series(rng.random(m))
    df = pl.DataFrame({"a": area, "e": exch, "l": line, "g": local8, "k": kind})
    a, e, ln, g, k = (pl.col(c) for c in "aelgk")
    text = (
        pl.when(k < 0.20).then(pl.format("({}) {}-{}", a, e, ln))
        .when(k < 0.35).then(pl.format("{}.{}.{}", a, e, ln))
        .when(k < 0.50).then(pl.format("+1 {} {} {}", a, e, ln))
        .when(k < 0.65).then(pl.format("{}{}{}", a, e, ln))
        .when(k < 0.75).then(pl.format("1-{}-{}-{}", a, e, ln))
        .when(k < 0.80).then(pl.format("{}-{}-{}", a, e, ln))
        .when(k < 0.82).then(pl.format("({}) {}-{} ext. {}", a, e, ln, g.str.slice(0, 3)))
        .when(k < 0.86).then(pl.format("+44 20 {} {}", g.str.slice(0, 4), g.str.slice(4)))
        .when(k < 0.89).then(pl.format("0044 7{} {}", g.str.slice(0, 3), g.str.slice(3, 6)))
        .when(k < 0.92).then(pl.format("011 49 30 {}", g.str.slice(0, 7)))
        .when(k < 0.95).then(pl.format("+33 6 {} {} {} {}", g.str.slice(0, 2), g.str.slice(2, 2),
                                       g.str.slice(4, 2), g.str.slice(6, 2)))
        .when(k < 0.97).then(pl.format("{}-{}", e, ln))  # no area code
        .otherwise(pl.format("{}{}", ln, g.str.slice(0, 2)))  # junk: too short
    )  # fmt: skip
    pool = df.select(text.alias("phone")).get_column("phone").unique(maintain_order=True)
    pool = pool.head(distinct)
    assert pool.len() == distinct, pool.len()
    pick = pl.Series(rng.integers(0, distinct, n), dtype=pl.UInt32)
    return pool.gather(pick)


def _time_old(df: pl.DataFrame) -> tuple[float, pl.DataFrame]:
    ch = old_phone(pl.col("phone"))
    t = time.perf_counter()
    out = df.select(ch.value.alias("value"), ch.problem.alias("problem"))
    return time.perf_counter() - t, out


def _time_new(df: pl.DataFrame, region: str) -> tuple[float, pl.DataFrame]:
    """As build_attributes evaluates a rule: the value, then its problem read off it."""
    ch = normalize.phone(pl.col("phone"), region)
    t = time.perf_counter()
    out = df.with_columns(ch.value.alias("value")).select(
        "value", ch.problem_given(pl.col("value")).alias("problem")
    )
    return time.perf_counter() - t, out


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks phones")
    p.add_argument("--values", type=int, default=10_000_000)
    p.add_argument("--distinct", type=int, default=1_000_000)
    p.add_argument("--region", default="US")
    p.add_argument("--runs", type=int, default=3, help="runs of each rule (median reported)")
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="skip timing the phonenumbers package on every distinct key",
    )
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    t = time.perf_counter()
    values = make_values(a.values, a.distinct)
    df = values.to_frame("phone")
    made = time.perf_counter() - t
    distinct = values.n_unique()
    keys = values.unique().to_frame().select(phones.canonical(pl.col("phone"))).to_series()
    keys = keys.filter(keys != "").unique()
    digits = keys.filter(keys.str.contains(phone_expressions.SIMPLE_KEY))
    by_expressions = int(
        phone_expressions.parse_digit_keys(digits, a.region, phones._VECTORISED_FROM)[
            "handled"
        ].sum()
    )

    old_runs, new_runs = [], []
    for _ in range(a.runs):  # alternated, so machine load falls on both alike
        s, old = _time_old(df)
        old_runs.append(s)
        del old
        gc.collect()
        s, new = _time_new(df, a.region)
        new_runs.append(s)
        gc.collect()
    old_s, new_s = statistics.median(old_runs), statistics.median(new_runs)
    sent = int(new.get_column("value").is_not_null().sum())
    invalid = int((new.get_column("problem") == phones.INVALID_RULE).sum())
    ref_s: float | str = ""
    if not a.no_reference:
        t = time.perf_counter()
        for k in keys.to_list():
            phones.parse_key(k, a.region)
        ref_s = round(time.perf_counter() - t, 1)
    # The cut the vectorised parse makes: the distinct keys alone, through both paths.
    t = time.perf_counter()
    parsed = phones.parse_keys(keys, a.region)
    keys_s = time.perf_counter() - t
    assert parsed.height == keys.len()

    k = a.runs
    rows = [
        Row(f"phone rule, {a.values:,} values / {distinct:,} distinct (median of {k})",
            round(new_s, 2), round(old_s, 2), "s", "<= 1.2x the old rule"),
        Row("values per second", round(a.values / new_s), round(a.values / old_s), "values/s"),
        Row(f"of which: parsing the {keys.len():,} distinct keys", round(keys_s, 2), ref_s, "s",
            "baseline here: phonenumbers.parse per key"),
        Row("keys parsed by expressions / by phonenumbers",
            f"{by_expressions:,} / {keys.len() - by_expressions:,}"),
        Row("values sent as E.164 / set aside as phone_invalid", f"{sent:,} / {invalid:,}"),
        Row("peak RSS", round(peak_rss_mb()), "", "MB"),
    ]  # fmt: skip
    report(
        f"Phone normalisation, {a.values:,} values",
        "phones " + " ".join(argv),
        rows,
        notes=f"Region {a.region}. Baseline: the rule before issue 22 (North American numbers "
        "only, regex expressions in polars; copied in benchmarks/phones.py), same column, same "
        "process, runs alternated. amp_braze: normalize.phone evaluated as build_attributes "
        "does (value, then its problem). 'keys parsed by expressions': digits-only keys parsed "
        "and validated by polars expressions built from libphonenumber's metadata; the rest by "
        f"the phonenumbers package one key at a time. Data made in {made:.1f} s (not timed). The "
        "old rule sends every value it cannot read as typed; the new one sends only valid "
        "numbers, so the two do not produce the same column.",
        record=not a.no_record,
    )
