"""The ``sources:`` section: one feed each, where it is read from (a file, or a database table or
query) and what identifies its rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, model_validator

from amp_braze.braze import phones
from amp_braze.config.database import DatabaseUri
from amp_braze.config.errors import problem
from amp_braze.config.section import Loading, Section, derived, set_by_loader
from amp_braze.config.values import (
    Duration,
    Names,
    PhoneRegion,
    Shown,
    bounded,
    one_of,
    resolve_path,
)

FeedFormat = Literal["csv", "parquet", "ndjson"]
ColumnType = Literal["string", "int", "float", "bool", "date", "datetime", "decimal", "phone"]
KeyNormalizer = Literal["none", "trim", "lower", "email"]
FEED_FORMATS: tuple[str, ...] = get_args(FeedFormat)
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)
KEY_NORMALIZERS: tuple[str, ...] = get_args(KeyNormalizer)

Format = one_of(FeedFormat)
Type = one_of(ColumnType, "type")
Normalizer = one_of(KeyNormalizer)

_EXTENSIONS = (
    ((".csv", ".csv.gz", ".tsv"), "csv"),
    ((".parquet", ".pq"), "parquet"),
    ((".ndjson", ".jsonl", ".json"), "ndjson"),
)


def format_of(path: str) -> str | None:
    """The feed format a file name says, if it says one."""
    lower = path.lower()
    return next((fmt for suffixes, fmt in _EXTENSIONS if lower.endswith(suffixes)), None)


_DATABASE_ONLY = ("table", "query", "lookback", "deleted_at", "delete_scan_every", "upstream")


class SourceConfig(Section):
    """One feed: a file (or glob) of customer rows, or a database table or query, read into the
    table ``sources/<name>``."""

    name: str = set_by_loader("", description="The feed's key under `sources:`.")
    path: str | None = Field(
        None,
        description="The feed's file: a local path (relative to the configuration file), a "
        "glob (`feeds/pos_*.csv`) or `s3://bucket/key` (globs work there too). One of `path` "
        "and `database`.",
    )
    format: Format | None = derived(
        None,
        description="`csv` (`.csv`, `.tsv`), `parquet` (`.parquet`, `.pq`) or `ndjson` "
        "(`.ndjson`, `.jsonl`, `.json`); files only.",
        otherwise="from the extension",
    )
    database: Annotated[DatabaseUri, Shown("database URI")] | None = Field(
        None,
        description="A database to read the feed from: `postgresql://user:${PASSWORD}@host:5432/db` "
        "(also Redshift as `redshift://`), `sqlite:///file.db`, `duckdb:///file.duckdb` (files "
        "relative to the configuration file), `snowflake://user:${PASSWORD}@account/db/schema?"
        "warehouse=wh` or `bigquery://project/dataset` (extras `amp_braze[snowflake]`, "
        "`amp_braze[bigquery]`). Write the password as `${VARIABLE}`: it is read from the "
        "environment and masked wherever the URI is shown.",
    )
    table: str | None = Field(
        None, description="The table or view to read (`public.customers`); databases only."
    )
    query: str | None = Field(
        None,
        description="A `SELECT` to read instead of a table (one of `table` and `query`); "
        "databases only.",
    )
    lookback: Duration = Field(
        timedelta(hours=1),
        description="With `updated_at`, each read takes the rows updated since the newest "
        "`updated_at` read last time minus this (`30m`, `1h`, `2d`): rows committed late with an "
        "older timestamp are still caught; databases only.",
    )
    deleted_at: str | None = Field(
        None,
        description="A soft-delete column: rows where it is set are left out, and setting it "
        "counts as a change; databases only.",
    )
    delete_scan_every: bounded(int, low=1) = Field(
        6,
        description="Rows deleted from the table (not soft-deleted), and rows committed later "
        "than the lookback with an older updated_at, are found by reading its key column whole, "
        "every this many incremental reads (1: every read). Between "
        "scans a hard-deleted row stays in the feed; databases only.",
    )
    upstream: Names = Field(
        (),
        description="Dagster asset keys that produce the table (a dbt model, another team's "
        "asset), drawn upstream of the feed: `[analytics/customers]` (a key's parts joined by "
        "`/`); databases only.",
    )
    profile: bool = Field(
        True,
        description="`false`: the feed is a table for SQL only (orders, visits for an event "
        "stream), not unified into `customer_profiles`; several rows per customer are fine.",
    )
    customer_key: str | None = Field(
        None,
        description="The column (after renames) that identifies the customer across feeds; "
        "required without `identity:`.",
    )
    updated_at: str | None = Field(
        None,
        description="The column that says how fresh a row is (survivorship: the newest non-null "
        "value wins); rows without one rank last.",
    )
    priority: int = Field(
        0, description="Tie-break between feeds when timestamps are equal: higher wins."
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Renames, `{FEED_COLUMN: our_column}`."
    )
    types: dict[str, Type] = Field(
        default_factory=dict,
        description="Casts after renames, `{column: type}`, type one of "
        + ", ".join(f"`{t}`" for t in COLUMN_TYPES)
        + ". In CSV feeds a typed column is read as text first, so `phone: string` keeps `+` "
        "and leading zeros; `phone` also normalises the column to E.164 when the feed is read "
        "(a feed's `phone` column always is).",
    )
    key_normalize: Normalizer = Field(
        "trim",
        description="How the key is normalised before feeds are joined: `none`, `trim`, "
        "`lower`, `email` (trim + lower case).",
    )
    separator: str = Field(",", description="CSV field separator.")
    record_id: str | None = Field(
        None,
        description="The column that identifies a row within this feed (identity resolution "
        "gives each record an `amp_id`); required with `identity:`.",
    )
    phone_region: PhoneRegion = derived(
        phones.DEFAULT_REGION,
        description="This feed's region for phone numbers written without a country code (a UK "
        "till writes UK numbers).",
        otherwise="`phone_region` (top level)",
    )
    phone_region_column: str | None = Field(
        None,
        description="A column naming each row's region (a till system across countries); "
        "blank or unknown: the feed's region.",
    )

    @property
    def is_s3(self) -> bool:
        return self.path is not None and self.path.startswith("s3://")

    @property
    def is_database(self) -> bool:
        return self.database is not None

    @property
    def location(self) -> str:
        """Where the feed is read from, as messages and the UI show it (no secret)."""
        if self.database is None:
            return str(self.path)
        return f"{self.database.masked} ({self.table or 'query'})"

    @property
    def upstream_keys(self) -> list[list[str]]:
        return [n.split("/") for n in self.upstream]

    @property
    def key_columns(self) -> list[str]:
        """The columns that identify a row: read as text, never typed."""
        return [c for c in (self.customer_key, self.record_id) if c]

    @property
    def phone_columns(self) -> list[str]:
        """The columns (after renames) normalised to E.164 when the feed is read: ``phone`` and
        every column typed ``phone``."""
        typed = [c for c, t in self.types.items() if t == "phone"]
        return typed if "phone" in typed else ["phone", *typed]

    @classmethod
    def _required(cls, loading: Loading) -> tuple[str, ...]:
        return ("record_id",) if loading.identity else ("customer_key",)

    @classmethod
    def _prepare(cls, data: dict[str, Any], loading: Loading) -> dict[str, Any]:
        data = super()._prepare(data, loading)
        if ("path" in data) == ("database" in data):
            both = "both" if "path" in data else "neither"
            raise problem(
                f"a source reads a file (`path:`) or a database (`database:`); this one has {both}",
                at="database" if "database" in data else "path",
            )
        if "database" in data:
            return cls._prepare_database(data, loading)
        for key in _DATABASE_ONLY:
            if key in data:
                raise problem(
                    f"`{key}` is for database sources; this one reads {data['path']!r}", at=key
                )
        raw = data.get("path")
        if isinstance(raw, str):
            data["path"] = resolve_path(raw, loading.base_dir)
            if "format" not in data:
                data["format"] = format_of(raw)
                if data["format"] is None:
                    raise problem(
                        f"cannot tell the format of {raw!r} from its extension; set `format:` to "
                        "csv, parquet or ndjson",
                        at="path",
                    )
        data.setdefault("phone_region", loading.phone_region)
        return data

    @classmethod
    def _prepare_database(cls, data: dict[str, Any], loading: Loading) -> dict[str, Any]:
        if "format" in data:
            raise problem("`format` is for files; a database source has none", at="format")
        if ("table" in data) == ("query" in data):
            has = "both" if "table" in data else "neither"
            raise problem(f"give one of `table` and `query`; this source has {has}", at="table")
        raw = data["database"]
        if isinstance(raw, str):
            try:
                data["database"] = DatabaseUri.parse(raw, loading.base_dir)
            except ValueError as e:
                raise problem(str(e), at="database") from None
        data.setdefault("phone_region", loading.phone_region)
        return data

    @model_validator(mode="after")
    def _a_query_is_one_select(self) -> SourceConfig:
        if self.query is not None and ";" in self.query.strip().rstrip(";"):
            raise ValueError("`query` must be one SELECT statement (it holds a `;`)")
        return self
