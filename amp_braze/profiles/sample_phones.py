"""How the sample feeds write phone numbers: as people and systems do, country by country.

North American numbers in area codes in use (a number in an unassigned area code is not valid,
and the Braze phone rule sets it aside), in the formats a till or a form lets through. Separate
systems also have European customers: the London customers, and about one in seven living in
Berlin or Paris. The tills of the brand's London, Berlin and Paris stores write their numbers as
people there write them (``020 7946 0958``, ``030 1234567``, ``01 23 45 67 89``); the web shop
keeps them with their international prefix (``+44 ...``, ``0049 ...``); the loyalty app in E.164
with a space after the calling code.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def messy_phone(r: pl.Expr) -> pl.Expr:
    a = pl.col("area").cast(pl.String)
    x = pl.col("exchange").cast(pl.String)
    ln = pl.col("line").cast(pl.String).str.zfill(4)
    return (
        pl.when(r < 0.25)
        .then(pl.format("({}) {}-{}", a, x, ln))
        .when(r < 0.45)
        .then(pl.format("{}.{}.{}", a, x, ln))
        .when(r < 0.65)
        .then(pl.format("+1 {} {} {}", a, x, ln))
        .when(r < 0.85)
        .then(pl.format("{}{}{}", a, x, ln))
        .otherwise(pl.format("1-{}-{}-{}", a, x, ln))
    )


# -- separate systems only: North American numbers in area codes in use, and European customers ---
AREA_CODES = [
    "201", "202", "206", "212", "213", "214", "215", "303", "305", "310", "312", "313", "404",
    "407", "410", "415", "416", "503", "512", "514", "602", "604", "612", "617", "619", "646",
    "650", "702", "704", "713", "718", "720", "773", "786", "801", "808", "818", "901", "914",
    "917", "919", "925", "949", "971", "972", "978",
]  # fmt: skip
EU_CITIES = {"GB": "London", "DE": "Berlin", "FR": "Paris"}
CALLING_CODES = {"GB": "44", "DE": "49", "FR": "33"}


def europeans(u: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Area codes in use for the North Americans (the same draw, mapped onto AREA_CODES).
    London customers stay British; about 7% each move to Berlin and Paris. Each European gets
    a national significant number of their country, unique per customer (a bijection of their
    number), a landline in the capital or a mobile: London 20 7xxx xxxx / mobile 78xx xxxxxx,
    Berlin 30 xxxxxxx / mobile 151 xxxxxxxx, Paris 1 xx xx xx xx / mobile 6 xx xx xx xx."""
    n = len(u)
    r = pl.Series(rng.random(n))
    mobile = pl.Series(rng.random(n) < 0.4)
    country = (
        pl.when(pl.col("home_city") == "London")
        .then(pl.lit("GB"))
        .when(r < 0.07)
        .then(pl.lit("DE"))
        .when(r < 0.14)
        .then(pl.lit("FR"))
    )
    seven = ((pl.col("n") * 7919 + 13) % 10_000_000).cast(pl.String).str.zfill(7)
    nsn = (
        pl.when(pl.col("country") == "GB")
        .then(pl.when(mobile).then(pl.format("78{}0", seven)).otherwise(pl.format("207{}", seven)))
        .when(pl.col("country") == "DE")
        .then(pl.when(mobile).then(pl.format("151{}5", seven)).otherwise(pl.format("30{}", seven)))
        .when(pl.col("country") == "FR")
        .then(pl.when(mobile).then(pl.format("6{}3", seven)).otherwise(pl.format("1{}7", seven)))
    )
    area = pl.lit(pl.Series(AREA_CODES)).gather((pl.col("area") - 201) % len(AREA_CODES))
    return (
        u.with_columns(country.fill_null(pl.col("country")).alias("country"), area.alias("area"))
        .with_columns(
            pl.col("country")
            .replace_strict(EU_CITIES, default=pl.col("home_city"))
            .alias("home_city"),
            nsn.alias("nsn"),
        )
        .with_columns(pl.col("country").replace_strict(CALLING_CODES, default=None).alias("cc"))
    )


def _groups(x: pl.Expr, sizes: list[int], sep: str) -> pl.Expr:
    """``x`` cut into groups of the given sizes (the last takes the rest), joined by ``sep``."""
    parts, at = [], 0
    for size in sizes:
        parts.append(x.str.slice(at, size))
        at += size
    parts.append(x.str.slice(at))
    return pl.concat_str(parts, separator=sep).str.strip_chars(sep)


def eu_local(r: pl.Expr) -> pl.Expr:
    """As a European store's till has it: national, with the trunk 0, as people write it there."""
    nsn, c = pl.col("nsn"), pl.col("country")
    gb_area = pl.when(nsn.str.starts_with("20")).then(2).otherwise(4)
    gb = (
        pl.when(r < 0.35).then(pl.concat_str(pl.lit("0"), _gb(nsn, " ")))  # 020 7946 0958
        .when(r < 0.55).then(pl.format("(0{}) {}", nsn.str.slice(0, gb_area), _groups(nsn.str.slice(gb_area), [4], " ")))
        .when(r < 0.70).then(pl.concat_str(pl.lit("0"), _gb(nsn, "-")))
        .when(r < 0.85).then(pl.concat_str(pl.lit("0"), nsn))
        .otherwise(pl.format("+44 (0){}", _gb(nsn, " ")))
    )  # fmt: skip
    de_area = pl.when(nsn.str.starts_with("30")).then(2).otherwise(3)
    de = (
        pl.when(r < 0.40).then(pl.format("0{} {}", nsn.str.slice(0, de_area), nsn.str.slice(de_area)))  # 030 1234567
        .when(r < 0.60).then(pl.format("0{}/{}", nsn.str.slice(0, de_area), nsn.str.slice(de_area)))
        .when(r < 0.80).then(pl.format("(0{}) {}", nsn.str.slice(0, de_area), _groups(nsn.str.slice(de_area), [3, 2], " ")))
        .otherwise(pl.format("+49 (0){} {}", nsn.str.slice(0, de_area), nsn.str.slice(de_area)))
    )  # fmt: skip
    fr = (
        pl.when(r < 0.45).then(pl.format("0{} {}", nsn.str.slice(0, 1), _groups(nsn.str.slice(1), [2, 2, 2], " ")))  # 01 23 45 67 89
        .when(r < 0.70).then(pl.format("0{}.{}", nsn.str.slice(0, 1), _groups(nsn.str.slice(1), [2, 2, 2], ".")))
        .when(r < 0.90).then(pl.concat_str(pl.lit("0"), nsn))
        .otherwise(pl.format("+33 {} {}", nsn.str.slice(0, 1), _groups(nsn.str.slice(1), [2, 2, 2], " ")))
    )  # fmt: skip
    return pl.when(c == "GB").then(gb).when(c == "DE").then(de).otherwise(fr)


def _gb(nsn: pl.Expr, sep: str) -> pl.Expr:
    """A British number grouped as written: 20 7946 0958 (London), 7812 345678 (mobile)."""
    return (
        pl.when(nsn.str.starts_with("20"))
        .then(_groups(nsn, [2, 4], sep))
        .otherwise(_groups(nsn, [4], sep))
    )


def eu_international(r: pl.Expr) -> pl.Expr:
    """As the web shop has it: with the calling code, after + or 00, grouped as at home."""
    nsn, c = pl.col("nsn"), pl.col("country")
    de_area = pl.when(nsn.str.starts_with("30")).then(2).otherwise(3)
    grouped = (
        pl.when(c == "GB")
        .then(_gb(nsn, " "))
        .when(c == "DE")
        .then(pl.format("{} {}", nsn.str.slice(0, de_area), nsn.str.slice(de_area)))
        .otherwise(
            pl.format("{} {}", nsn.str.slice(0, 1), _groups(nsn.str.slice(1), [2, 2, 2], " "))
        )
    )
    prefix = pl.when(r < 0.6).then(pl.lit("+")).otherwise(pl.lit("00"))
    return pl.format("{}{} {}", prefix, pl.col("cc"), grouped)


def for_europeans(col: str, european: pl.Expr) -> pl.Expr:
    """A feed's phone column with the European customers' numbers written by ``european``."""
    c = pl.col(col)
    return pl.when(c.is_not_null() & pl.col("nsn").is_not_null()).then(european).otherwise(c)
