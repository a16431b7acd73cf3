"""The tables user SQL (the profile SQL, SQL segments, event streams) can read, which ones a query reads (so
every table a SQL file reads is an upstream edge in the asset graph), and running it with polars SQL."""

from __future__ import annotations

import polars as pl

from amp_braze.catalogue import CLUSTERS, ENGAGEMENT, PROFILES, source_table
from amp_braze.config import Config
from amp_braze.engagement_schema import empty_engagement_summary
from amp_braze.sql_reads import tables_read
from amp_braze.storage import Storage


class SqlError(ValueError):
    """User SQL that polars cannot run; the message names the config key of the SQL."""


def source_sql_name(name: str) -> str:
    return f"sources_{name}"


def base_tables(
    config: Config, storage: Storage, queries: list[str] | None = None
) -> dict[str, pl.LazyFrame]:
    """customer_profiles, engagement_summary (empty with its schema until Currents data exists) and
    one ``sources_<name>`` per feed. With ``queries``, only the tables they read are opened (each
    opened table is pinned to its current version, which on S3 means downloading it); the others
    are empty stand-ins that keep their names in error messages."""
    reads = [tables_read(q) for q in queries] if queries is not None else [None]
    wanted = None if any(r is None for r in reads) else set().union(*reads)

    shared = storage.shared  # a shard's own profiles; what every shard reads, from the root

    def table(name: str, stored: str, where: Storage = shared) -> pl.LazyFrame:
        return where.scan_table(stored) if wanted is None or name in wanted else pl.LazyFrame()

    tables = {PROFILES: table(PROFILES, PROFILES, storage)}
    if shared.table_exists(ENGAGEMENT):
        tables[ENGAGEMENT] = table(ENGAGEMENT, ENGAGEMENT)
    else:
        tables[ENGAGEMENT] = empty_engagement_summary().lazy()
    for name in config.sources:
        tables[source_sql_name(name)] = table(source_sql_name(name), source_table(name))
    if config.identity is not None:  # record -> amp_id, for tables keyed by a feed's record id
        tables[CLUSTERS] = table(CLUSTERS, CLUSTERS)
    return tables


def table_assets(config: Config) -> dict[str, list[str]]:
    """Per table name user SQL may use, the asset key (path) that writes it."""
    out = {PROFILES: [PROFILES]}
    if config.currents is not None:
        out[ENGAGEMENT] = [ENGAGEMENT]
    for name in config.sources:
        out[source_sql_name(name)] = source_table(name).split("/")
    if config.identity is not None:
        out[CLUSTERS] = [CLUSTERS]
    return out


def sql_upstream(sql: str, available: dict[str, list[str]]) -> list[list[str]]:
    """The asset keys of the tables a query reads, in the order of ``available``; every
    available table when the query cannot be parsed (an edge too many beats one missing)."""
    read = tables_read(sql)
    return [key for table, key in available.items() if read is None or table in read]


def run_sql(sql: str, tables: dict[str, pl.LazyFrame], key: str) -> pl.DataFrame:
    try:
        return pl.SQLContext(frames=tables, eager=False).execute(sql).collect()
    except (pl.exceptions.PolarsError, ValueError) as e:
        known = ", ".join(sorted(tables))
        raise SqlError(f"{key}: polars SQL failed: {e}\n(tables you can use: {known})") from None
