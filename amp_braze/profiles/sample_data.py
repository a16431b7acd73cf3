"""Deterministic sample feeds with the mess real feeds have, for the demo, tests and benchmarks.

Three feeds about one universe of N customers: point-of-sale (CSV), e-commerce (Parquet) and loyalty
(NDJSON). Customers appear in one, two or three feeds with conflicting values; emails come mixed-case
and padded; phones in several formats; values go missing; a few rows are repeated with an older
timestamp. Randomness comes from numpy's PCG64 with a fixed seed, strings are built with polars
expressions, never row by row in Python, so any number of customers a benchmark asks for is cheap.

Separate systems (``shared_key=False``, the demo's shape) also have European customers, whose
numbers each feed writes its own way (``sample_phones``); the point-of-sale rows record the
store's country (``store_country``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from amp_braze.profiles.sample_phones import (
    AREA_CODES,
    eu_international,
    eu_local,
    europeans,
    for_europeans,
    messy_phone,
)

FIRST = ["Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Isla", "Jon", "Kai",
         "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor",
         "Wen", "Ximena", "Yusuf", "Zoe"]  # fmt: skip
NICK = {"Elena": "Ellie", "Victor": "Vic", "Samuel": "Sam", "Benjamin": "Ben", "Grace": "Gracie"}
LAST = ["Smith", "Garcia", "Chen", "Okafor", "Muller", "Rossi", "Kowalski", "Tanaka", "Silva",
        "Nguyen", "Patel", "Haddad", "Novak", "Larsen", "Dubois", "Kim"]  # fmt: skip
DOMAINS = ["example.com", "mail.example.org", "shop.example.net", "inbox.example.io"]
CITIES = ["Seattle", "Austin", "Boston", "Denver", "Toronto", "London", "Chicago", "Miami"]
COUNTRY_OF_CITY = ["US", "US", "US", "US", "CA", "GB", "US", "US"]
TIERS = ["bronze", "silver", "gold", "platinum"]
NOW = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class SampleFiles:
    pos: Path
    ecommerce: Path
    loyalty: Path
    customers: int
    shop_database: Path | None = None  # the web shop's accounts as a DuckDB table


from amp_braze.profiles.sample_orders import write_orders  # noqa: E402

SHOP_DATABASE = "shop.duckdb"  # the web shop's database: its accounts table is the ecommerce feed
SHOP_TABLE = "accounts"


def write_shop_database(path: Path, accounts: pl.DataFrame) -> Path:
    """The web shop's accounts as a table of a DuckDB file, as the shop's own database holds
    them (a database feed needs no server: the demo reads it like any other database)."""
    import duckdb

    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as con:
        con.register("rows", accounts.to_arrow())
        con.execute(f"CREATE TABLE {SHOP_TABLE} AS SELECT * FROM rows")
    return path


def _pick(values: list[str], idx: np.ndarray) -> pl.Series:
    return pl.Series(values, dtype=pl.String).gather(pl.Series(idx, dtype=pl.UInt32))


def _universe(n: int, rng: np.random.Generator) -> pl.DataFrame:
    first_i = rng.integers(0, len(FIRST), n)
    city_i = rng.integers(0, len(CITIES), n)
    dob_days = rng.integers(-15_000, 11_000, n)  # roughly 1928 .. 2000
    return pl.DataFrame(
        {
            "n": np.arange(n, dtype=np.int64),
            "first_name": _pick(FIRST, first_i),
            "last_name": _pick(LAST, rng.integers(0, len(LAST), n)),
            "domain": _pick(DOMAINS, rng.integers(0, len(DOMAINS), n)),
            "area": rng.integers(201, 990, n),
            "exchange": rng.integers(200, 999, n),
            "line": rng.integers(0, 10_000, n),
            "dob": pl.Series(dob_days, dtype=pl.Int32).cast(pl.Date),
            "gender": _pick(
                ["F", "M", "O", "N", "P"], rng.choice(5, n, p=[0.48, 0.46, 0.03, 0.02, 0.01])
            ),
            "home_city": _pick(CITIES, city_i),
            "country": _pick(COUNTRY_OF_CITY, city_i),
        }
    ).with_columns(
        customer_id=pl.format("C{}", pl.col("n").cast(pl.String).str.zfill(8)),
        email=pl.format(
            "{}.{}{}@{}",
            pl.col("first_name").str.to_lowercase(),
            pl.col("last_name").str.to_lowercase(),
            pl.col("n"),
            pl.col("domain"),
        ),
    )


def _messy_email(r: pl.Expr) -> pl.Expr:
    e = pl.col("email")
    return (
        pl.when(r < 0.15)
        .then(e.str.to_uppercase())
        .when(r < 0.30)
        .then(pl.format("  {} ", e))
        .when(r < 0.40)
        .then(pl.concat_str(e.str.slice(0, 1).str.to_uppercase(), e.str.slice(1)))
        .when(r > 0.997)
        .then(pl.lit("n/a"))  # a placeholder a cashier typed: not an email
        .otherwise(e)
    )


def _null_some(col: str, r: np.ndarray, share: float) -> pl.Expr:
    return pl.when(pl.Series(r >= share)).then(pl.col(col)).alias(col)


def _timestamps(rng: np.random.Generator, n: int, max_days: int) -> pl.Series:
    secs = rng.integers(0, max_days * 86_400, n)
    now_us = int(NOW.timestamp() * 1_000_000)
    return pl.Series(now_us - secs * 1_000_000, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))


def _loyalty_number() -> pl.Expr:
    return pl.format("L{}", pl.col("n").cast(pl.String).str.zfill(8))


def _with_duplicates(
    df: pl.DataFrame, rng: np.random.Generator, share: float, changed: str
) -> pl.DataFrame:
    """Repeat a few rows with an older timestamp and a stale value, as re-exports do."""
    k = max(1, int(len(df) * share))
    dup = df.sample(n=k, seed=int(rng.integers(0, 2**31)))
    dup = dup.with_columns(
        pl.col("updated_at") - pl.duration(days=30),
        pl.col(changed).reverse().alias(changed),
    )
    return pl.concat([df, dup]).sample(fraction=1.0, shuffle=True, seed=int(rng.integers(0, 2**31)))


def generate(
    out_dir: str | Path, customers: int = 10_000, seed: int = 7, shared_key: bool = True
) -> SampleFiles:
    """Write pos_customers.csv, ecommerce_customers.parquet (and the same accounts as the table
    ``accounts`` of shop.duckdb) and loyalty_members.ndjson.

    ``shared_key=False`` writes the feeds as separate systems would (the demo's shape): each with
    its own record id (``pos_id``, ``account_id``, ``loyalty_number``), and the loyalty number
    also on the point-of-sale rows of members who showed their card; identity resolution joins
    them. With ``shared_key=True`` every feed carries the same ``customer_id``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = customers
    u = _universe(n, rng)
    # Europeans, with their own random stream: every other draw stays as it was.
    eu_rng = np.random.default_rng([seed, 22])
    if not shared_key:
        u = europeans(u, eu_rng)
    else:  # North American numbers in area codes in use, as europeans maps them
        area = pl.lit(pl.Series(AREA_CODES)).gather((pl.col("area") - 201) % len(AREA_CODES))
        u = u.with_columns(area.alias("area"))

    # Which feeds know which customer: everyone is in at least one.
    in_pos = rng.random(n) < 0.70
    in_ecom = rng.random(n) < 0.60
    in_loy = rng.random(n) < 0.40
    nowhere = ~(in_pos | in_ecom | in_loy)
    in_pos |= nowhere

    pos = u.filter(pl.Series(in_pos))
    m = len(pos)
    pos = pos.with_columns(
        EMAIL=_messy_email(pl.Series(rng.random(m))),
        PHONE=messy_phone(pl.Series(rng.random(m))),
        store_id=pl.Series(rng.integers(1, 250, m)),
        lifetime_spend=pl.Series(np.round(rng.gamma(2.0, 180.0, m), 2)),
        last_purchase_date=pl.Series(
            (NOW.date() - date(1970, 1, 1)).days - rng.integers(0, 400, m), dtype=pl.Int32
        ).cast(pl.Date),
        updated_at=_timestamps(rng, m, 365),
    ).with_columns(
        _null_some("EMAIL", rng.random(m), 0.05),
        _null_some("PHONE", rng.random(m), 0.10),
        _null_some("first_name", rng.random(m), 0.03),
    )
    key = ["customer_id"]
    store: list[str] = []
    if not shared_key:  # (drawn only here: the shared-key feeds stay exactly as they were)
        card = pl.Series(in_loy[in_pos]) & pl.Series(rng.random(m) < 0.8)
        # European customers shop in their city's store, whose till writes local numbers.
        pos = pos.with_columns(
            pos_id=pl.format("S{}", (pl.col("n") * 7 + 3).cast(pl.String).str.zfill(9)),
            loyalty_number=pl.when(card).then(_loyalty_number()),
            PHONE=for_europeans("PHONE", eu_local(pl.Series(eu_rng.random(m)))),
            store_country=pl.when(pl.col("nsn").is_not_null())
            .then(pl.col("country"))
            .otherwise(pl.lit("US")),
        )
        key = ["pos_id", "loyalty_number"]
        store = ["store_country"]
    pos = pos.select(
        *key, "EMAIL", "first_name", "last_name", "PHONE", "store_id", *store,
        "lifetime_spend", "last_purchase_date", "updated_at",
    )  # fmt: skip
    pos = _with_duplicates(pos, rng, 0.01, "lifetime_spend")
    pos_path = out / "pos_customers.csv"
    pos.with_columns(pl.col("updated_at").dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(pos_path)

    ecom = u.filter(pl.Series(in_ecom))
    m = len(ecom)
    nick = pl.col("first_name").replace(NICK)
    old_email = pl.format(
        "{}{}@old-{}", pl.col("first_name").str.to_lowercase(), pl.col("n"), pl.col("domain")
    )
    ecom = ecom.with_columns(
        first_name=pl.when(pl.Series(rng.random(m) < 0.3))
        .then(nick)
        .otherwise(pl.col("first_name")),
        email=pl.when(pl.Series(rng.random(m) < 0.05)).then(old_email).otherwise(pl.col("email")),
        orders_count=pl.Series(rng.poisson(4.0, m)),
        online_revenue=pl.Series(np.round(rng.gamma(1.5, 120.0, m), 2)),
        last_order_at=_timestamps(rng, m, 540),
        email_opt_in=pl.Series(rng.random(m) < 0.7),
        updated_at=_timestamps(rng, m, 365),
    ).with_columns(
        _null_some("dob", rng.random(m), 0.25),
        _null_some("gender", rng.random(m), 0.20),
        _null_some("home_city", rng.random(m), 0.10),
    )
    contact: list[str] = []
    if not shared_key:  # separate systems: the shop keeps a delivery phone, identity links on it
        ecom = (
            ecom.with_columns(
                account_id=pl.format("W{}", (pl.col("n") * 13 + 5).cast(pl.String).str.zfill(9)),
                phone=messy_phone(pl.Series(rng.random(m))),
            )
            .with_columns(
                _null_some("phone", rng.random(m), 0.2),
            )
            .with_columns(
                phone=for_europeans("phone", eu_international(pl.Series(eu_rng.random(m)))),
            )
        )
        contact = ["phone"]
    ecom = ecom.select(
        "customer_id" if shared_key else "account_id", *contact, "email", "first_name", "last_name", "dob", "gender", "country",
        "home_city", "orders_count", "online_revenue", "last_order_at", "email_opt_in", "updated_at",
    )  # fmt: skip
    ecom = _with_duplicates(ecom, rng, 0.005, "orders_count")
    ecom_path = out / "ecommerce_customers.parquet"
    ecom.write_parquet(ecom_path)
    shop = write_shop_database(out / SHOP_DATABASE, ecom)
    write_orders(out, ecom, "customer_id" if shared_key else "account_id")

    loy = u.filter(pl.Series(in_loy))
    m = len(loy)
    tier_i = rng.choice(4, m, p=[0.5, 0.3, 0.15, 0.05])
    loy = loy.with_columns(
        member_customer_id=pl.col("customer_id"),
        phone=messy_phone(pl.Series(rng.random(m))),
        loyalty_tier=_pick(TIERS, tier_i),
        points_balance=pl.Series(rng.integers(0, 50_000, m)),
        dob=pl.col("dob").dt.strftime("%Y-%m-%d"),
        updated_at=_timestamps(rng, m, 365),
    ).with_columns(_null_some("dob", rng.random(m), 0.5), _null_some("phone", rng.random(m), 0.2))
    contact = []
    if not shared_key:  # members sign up with an email address
        app = pl.format("+{} {}", pl.col("cc"), pl.col("nsn"))  # the app keeps E.164
        loy = loy.with_columns(
            loyalty_number=_loyalty_number(),
            email=_messy_email(pl.Series(rng.random(m))),
            phone=for_europeans("phone", app),
        ).with_columns(_null_some("email", rng.random(m), 0.2))
        contact = ["email"]
    loy = loy.select(
        "member_customer_id" if shared_key else "loyalty_number",
        *contact,
        "first_name",
        "phone",
        "loyalty_tier",
        "points_balance",
        "dob",
        "updated_at",
    )
    loy = _with_duplicates(loy, rng, 0.01, "loyalty_tier")
    loy_path = out / "loyalty_members.ndjson"
    loy.with_columns(pl.col("updated_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_ndjson(loy_path)
    return SampleFiles(
        pos=pos_path, ecommerce=ecom_path, loyalty=loy_path, customers=n, shop_database=shop
    )


def customer_of_record() -> pl.Expr:
    """The generator's customer number behind a separate-systems record (tests and benchmarks
    know the truth from it): ``pos_id`` is S(7n+3), ``account_id`` W(13n+5), the loyalty number
    L(n)."""
    number = pl.col("record_id").str.slice(1).cast(pl.Int64)
    return (
        pl.when(pl.col("source") == "pos").then((number - 3) // 7)
        .when(pl.col("source") == "ecommerce").then((number - 5) // 13)
        .otherwise(number)
    )  # fmt: skip
