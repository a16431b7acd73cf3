"""The ``sources:`` section: one feed each, where it is read from and what identifies its rows."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field

from amp_braze.braze import phones
from amp_braze.config.errors import problem
from amp_braze.config.section import Loading, Section, derived, set_by_loader
from amp_braze.config.values import PhoneRegion, one_of, resolve_path

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


class SourceConfig(Section):
    """One feed: a file (or glob) of customer rows, read into the table ``sources/<name>``."""

    name: str = set_by_loader("", description="The feed's key under `sources:`.")
    path: str = Field(
        description="The feed's file: a local path (relative to the configuration file), a "
        "glob (`feeds/pos_*.csv`) or `s3://bucket/key` (globs work there too)."
    )
    format: Format = derived(
        description="`csv` (`.csv`, `.tsv`), `parquet` (`.parquet`, `.pq`) or `ndjson` "
        "(`.ndjson`, `.jsonl`, `.json`).",
        otherwise="from the extension",
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
        return self.path.startswith("s3://")

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
