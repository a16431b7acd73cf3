"""Reading one source feed (CSV, Parquet, NDJSON; local path, glob or s3://) into a typed frame.

Phone columns (``phone``, and every column typed ``phone``) are normalised as they are read, in the
feed's ``phone_region``: a valid number becomes E.164 (``020 7946 0958`` in a GB feed ->
``+442079460958``), so survivorship, identity and the Braze rule all see one form; a number that is
not valid is kept as typed (trimmed), so the Braze rule sets it aside as ``phone_invalid`` and the
rejection table shows what the feed said. With ``phone_region_column`` each row is read in the
region that column names (blank or unknown: the feed's region).
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
import os

import polars as pl

from amp_braze.braze import normalize, phones
from amp_braze.config import SourceConfig
from amp_braze.storage import s3_storage_options

DTYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us", "UTC"),
    "decimal": pl.Decimal(38, 6),
    "phone": pl.String(),  # and normalised to E.164 (phone_column)
}


READER_VERSION = 3  # bump when read_feed's output for the same file and configuration changes


class FeedError(ValueError):
    """A feed that cannot be read as configured; the message names the source key."""


def feed_files(src: SourceConfig) -> list[str]:
    """The files a local feed path (or glob) names now; S3 paths are passed through to polars."""
    if src.is_s3:
        return [src.path]
    files = sorted(globlib.glob(src.path))
    if not files:
        raise FeedError(f"sources.{src.name}.path: no file matches {src.path}")
    return files


def feed_fingerprint(src: SourceConfig, files: list[str]) -> str | None:
    """What a feed's table was read from: its configuration and each file's path, size, inode and
    modification and change times. The same fingerprint means reading again would give the same
    table (a file rewritten to the same size within one tick of the file system's clock would
    not be noticed; ``touch`` it to force a read). None on S3: there the feed is always read."""
    if src.is_s3:
        return None
    stats = []
    for f in files:
        st = os.stat(f)
        stats.append([f, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns])
    # libphonenumber's metadata too: a new release (numbers that became valid) reads again.
    basis = json.dumps(
        [READER_VERSION, phones.METADATA_VERSION, src.model_dump(), stats],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def _scan(src: SourceConfig, files: list[str]) -> pl.LazyFrame:
    opts = s3_storage_options() if src.is_s3 else None
    target = files[0] if src.is_s3 else files
    if src.format == "csv":
        # Columns typed in the config are read as strings first, so that a phone number or a zip
        # code keeps its leading zeros and "+"; the cast to the configured type comes after.
        inverse = {v: k for k, v in src.columns.items()}
        overrides = {inverse.get(col, col): pl.String() for col in src.types}
        for key in src.key_columns:
            overrides[inverse.get(key, key)] = pl.String()
        return pl.scan_csv(
            target,
            separator=src.separator,
            try_parse_dates=True,
            infer_schema_length=10_000,
            schema_overrides=overrides,
            storage_options=opts,
        )
    if src.format == "parquet":
        return pl.scan_parquet(target, storage_options=opts)
    return pl.scan_ndjson(target, infer_schema_length=10_000, storage_options=opts)


def _cast(col: str, type_name: str, dtype: pl.DataType) -> pl.Expr:
    c = pl.col(col)
    if type_name == "date":
        return (
            pl.when(c.cast(pl.String).str.len_chars() > 0)
            .then(c.cast(pl.String).str.to_date(strict=False))
            .alias(col)
        )
    if type_name == "datetime":
        return c.cast(pl.String).str.to_datetime(time_zone="UTC", strict=False).alias(col)
    if type_name == "bool":
        s = c.cast(pl.String).str.strip_chars().str.to_lowercase()
        return (
            pl.when(s.is_in(["true", "t", "yes", "y", "1"]))
            .then(True)
            .when(s.is_in(["false", "f", "no", "n", "0"]))
            .then(False)
            .alias(col)
        )
    return c.cast(dtype, strict=False).alias(col)


def phone_column(col: str, region: str, region_column: str | None = None) -> pl.Expr:
    """A phone column as the feed table holds it: E.164 where the number is valid in ``region``
    (or in the row's own region, from ``region_column``; or written internationally), else the
    text as typed (trimmed); blank is null."""
    c = pl.col(col).cast(pl.String)
    by_row = pl.col(region_column) if region_column else None
    return pl.coalesce(phones.e164_expr(c, region, by_row), normalize.trimmed(c)).alias(col)


def read_feed(src: SourceConfig) -> pl.DataFrame:
    """Read, rename and type a feed; raises FeedError naming the key for a missing file or column."""
    files = feed_files(src)
    lf = _scan(src, files)
    try:
        lf.collect_schema()
    except (FileNotFoundError, OSError, pl.exceptions.PolarsError) as e:
        raise FeedError(f"sources.{src.name}.path: cannot read {src.path}: {e}") from None
    lf = typed(src, lf)
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as e:
        raise FeedError(f"sources.{src.name}: cannot read {src.path}: {e}") from None


def typed(src: SourceConfig, lf: pl.LazyFrame) -> pl.LazyFrame:
    """A feed's rows as its table holds them: renamed, cast, keys as text, phones in E.164; a
    column the configuration names that the rows lack is a FeedError listing what they have."""
    schema = lf.collect_schema()
    missing = [c for c in src.columns if c not in schema]
    if missing:
        raise FeedError(
            f"sources.{src.name}.columns: column {missing[0]!r} is not in the feed; "
            f"it has {', '.join(schema)}"
        )
    lf = lf.rename(src.columns)
    names = [src.columns.get(c, c) for c in schema]
    named = (("customer_key", src.customer_key), ("record_id", src.record_id))
    for key, col in (*named, ("updated_at", src.updated_at), ("deleted_at", src.deleted_at)):
        if col is not None and col not in names:
            raise FeedError(
                f"sources.{src.name}.{key}: column {col!r} is not in the feed; it has {', '.join(names)}"
            )
    region_col = src.phone_region_column
    if region_col is not None and region_col not in names:
        raise FeedError(
            f"sources.{src.name}.phone_region_column: column {region_col!r} is not in the feed; "
            f"it has {', '.join(names)}"
        )
    for col in src.types:
        if col not in names:
            raise FeedError(
                f"sources.{src.name}.types.{col}: column {col!r} is not in the feed; it has {', '.join(names)}"
            )
    casts = [_cast(c, t, DTYPES[t]) for c, t in src.types.items()]
    for col in (src.updated_at, src.deleted_at):
        if col and col not in src.types:
            dt = lf.collect_schema()[col]
            if dt == pl.String:
                casts.append(_cast(col, "datetime", DTYPES["datetime"]))
            elif dt == pl.Date:
                casts.append(pl.col(col).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
            elif isinstance(dt, pl.Datetime):
                utc = pl.col(col).dt.cast_time_unit("us")
                if dt.time_zone is None:
                    casts.append(utc.dt.replace_time_zone("UTC"))
                else:
                    casts.append(utc.dt.convert_time_zone("UTC"))
    if casts:
        lf = lf.with_columns(casts)
    lf = lf.with_columns(pl.col(k).cast(pl.String) for k in src.key_columns)
    # Phones (not a key column: keys stay as they are read).
    phone_cols = [c for c in src.phone_columns if c in names and c not in src.key_columns]
    if phone_cols:
        lf = lf.with_columns(phone_column(c, src.phone_region, region_col) for c in phone_cols)
    return lf
