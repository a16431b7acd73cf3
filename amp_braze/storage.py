"""Parquet tables and small JSON documents under a storage root: a local folder or s3://bucket/prefix.

Writes are atomic: a reader sees the old table or the new one, never half of one. Locally a table is
written to a temporary file beside its target and renamed over it; on S3 an object only becomes
visible when its upload completes. Names are relative paths such as ``sources/pos`` or
``sync/state/v000003/part-0000``; tables get the ``.parquet`` suffix.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import orjson
import polars as pl

from amp_braze.failpoints import failpoint

TABLES = "tables"
COMPRESSION = (
    "lz4"  # the planner reads whole tables every sync; LZ4 decodes ~2x faster than zstd here
)
SUMMARY_KEY = "amp_braze.summary"
SPOOL_CHUNK = 8 << 20  # bytes copied at a time from an S3 object to its local copy


@dataclass(frozen=True)
class Snapshot:
    """A table as one version of it: rows to scan and the footer written with them."""

    frame: pl.LazyFrame
    footer: dict[str, Any]


def _summary(meta: dict[str, str]) -> dict[str, Any]:
    raw = meta.get(SUMMARY_KEY)
    return orjson.loads(raw) if raw else {}


def non_null_counts(df: pl.DataFrame) -> dict[str, int]:
    return {c: df.height - n for c, n in df.null_count().row(0, named=True).items()}


def s3_storage_options() -> dict[str, str]:
    """polars/object_store options from the usual AWS variables; AWS_ENDPOINT_URL points at a local S3."""
    opts: dict[str, str] = {}
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["aws_endpoint_url"] = endpoint
        if endpoint.startswith("http://"):
            opts["aws_allow_http"] = "true"
        opts["aws_virtual_hosted_style_request"] = "false"
    for var, key in (
        ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_SESSION_TOKEN", "aws_session_token"),
    ):
        if env.get(var):
            opts[key] = env[var]
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    opts["aws_region"] = region or "us-east-1"
    return opts


def s3_client() -> Any:
    """A boto3 S3 client; boto3 itself honours AWS_ENDPOINT_URL."""
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", region_name=region)


def split_s3(url: str) -> tuple[str, str]:
    rest = url[len("s3://") :]
    bucket, _, key = rest.partition("/")
    return bucket, key.strip("/")


@contextmanager
def _staged(target: Path) -> Iterator[tuple[Path, Path]]:
    """A temporary file beside ``target`` (same filesystem, so a rename is atomic), removed if the
    caller does not publish it; readers never see it (listing skips dot-files)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    try:
        yield tmp, target
    finally:
        tmp.unlink(missing_ok=True)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class Storage:
    """One storage root. Cheap to create; S3 clients are made on first use."""

    def __init__(self, root: str | Path):
        root = str(root)
        self.is_s3 = root.startswith("s3://")
        self.root = root.rstrip("/")
        if self.is_s3:
            self.bucket, self.prefix = split_s3(self.root)
        else:
            self.bucket, self.prefix = "", ""

    def __repr__(self) -> str:
        return f"Storage({self.root!r})"

    @cached_property
    def _s3(self) -> Any:
        return s3_client()

    @property
    def storage_options(self) -> dict[str, str] | None:
        return s3_storage_options() if self.is_s3 else None

    # -- naming ---------------------------------------------------------------------------------
    def uri(self, name: str) -> str:
        """The full path or URL of an object under the root."""
        name = name.strip("/")
        return f"{self.root}/{name}"

    def _key(self, name: str) -> str:
        name = name.strip("/")
        return f"{self.prefix}/{name}" if self.prefix else name

    @staticmethod
    def table_name(table: str) -> str:
        return f"{TABLES}/{table.strip('/')}.parquet"

    # -- bytes ----------------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes) -> None:
        if self.is_s3:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
            return
        with _staged(Path(self.uri(name))) as (tmp, target):
            _write_synced(tmp, data)
            os.replace(tmp, target)

    def create_bytes(self, name: str, data: bytes) -> bool:
        """Write only if nothing is there yet (atomically); False if the object already exists.

        The sync state's version manifests use this so two racing commits cannot both win."""
        if self.is_s3:
            try:
                self._s3.put_object(
                    Bucket=self.bucket, Key=self._key(name), Body=data, IfNoneMatch="*"
                )
                return True
            except Exception as e:  # botocore ClientError
                code = getattr(e, "response", {}).get("Error", {}).get("Code")
                if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    return False
                raise
        with _staged(Path(self.uri(name))) as (tmp, target):
            _write_synced(tmp, data)
            failpoint("storage.create_staged")
            try:
                os.link(tmp, target)  # fails if the target exists
            except FileExistsError:
                return False
            return True

    def read_bytes(self, name: str) -> bytes:
        if self.is_s3:
            return self._s3_body(name).read()
        return Path(self.uri(name)).read_bytes()

    def _s3_body(self, name: str) -> Any:
        """The S3 object's body as a stream (one GET: one version of the object)."""
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        except self._s3.exceptions.NoSuchKey:
            raise FileNotFoundError(self.uri(name)) from None

    def write_json(self, name: str, value: Any) -> None:
        self.write_bytes(name, orjson.dumps(value, option=orjson.OPT_INDENT_2))

    def read_json(self, name: str, default: Any = None) -> Any:
        try:
            return orjson.loads(self.read_bytes(name))
        except FileNotFoundError:
            return default

    def exists(self, name: str) -> bool:
        if self.is_s3:
            try:
                self._s3.head_object(Bucket=self.bucket, Key=self._key(name))
                return True
            except Exception as e:  # botocore ClientError 404
                if getattr(e, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    return False
                raise
        return Path(self.uri(name)).is_file()

    def list(self, prefix: str) -> list[str]:
        """Names (relative to the root) of the objects under a folder, sorted; temp files excluded."""
        return sorted(self.versions(prefix))

    def versions(self, prefix: str) -> dict[str, str]:
        """Per object under a folder, a string that changes whenever the object is rewritten
        (size and modification time, plus the ETag on S3)."""
        prefix = prefix.strip("/")
        if self.is_s3:
            out = {}
            paginator = self._s3.get_paginator("list_objects_v2")
            key_prefix = self._key(prefix) + "/"
            strip = len(self.prefix) + 1 if self.prefix else 0
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key_prefix):
                for o in page.get("Contents", []):
                    out[o["Key"][strip:]] = (
                        f"{o['Size']}:{o['LastModified'].isoformat()}:{o['ETag']}"
                    )
            return out
        base = Path(self.uri(prefix))
        if not base.is_dir():
            return {}
        root = Path(self.root)
        out = {}
        for p in base.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                st = p.stat()
                out[str(p.relative_to(root))] = f"{st.st_size}:{st.st_mtime_ns}"
        return out

    def delete(self, name: str) -> None:
        if self.is_s3:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(name))
        else:
            Path(self.uri(name)).unlink(missing_ok=True)

    def remove_empty_folders(self, prefix: str) -> None:
        """Local storage only (object stores have no folders): drop folders left empty."""
        base = Path(self.uri(prefix.strip("/")))
        if self.is_s3 or not base.is_dir():
            return
        for p in sorted(base.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()

    def remove_stale_temp_files(self, prefix: str, older_than_seconds: float = 600.0) -> int:
        """Delete what writes killed mid-way left under a folder: local temporary files, and on
        S3 multipart uploads never completed. Only ones older than ``older_than_seconds``, so a
        write still under way is never touched. Returns how many were removed."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        if self.is_s3:
            try:
                ups = self._s3.list_multipart_uploads(
                    Bucket=self.bucket, Prefix=self._key(prefix.strip("/")) + "/"
                )
            except Exception:  # not every S3 implementation lists uploads; lifecycle rules do it
                return 0
            for up in ups.get("Uploads", []):
                if up["Initiated"].timestamp() < cutoff:
                    self._s3.abort_multipart_upload(
                        Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                    )
                    removed += 1
            return removed
        base = Path(self.uri(prefix.strip("/")))
        if not base.is_dir():
            return 0
        for p in base.rglob(".*.tmp-*"):
            try:
                if p.is_file() and p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def delete_prefix(self, prefix: str) -> None:
        for name in self.list(prefix):
            self.delete(name)

    # -- parquet --------------------------------------------------------------------------------
    def write_parquet(self, name: str, df: pl.DataFrame, footer: dict | None = None) -> str:
        """Write a frame atomically to ``name`` (a path ending in .parquet); returns its URI.

        The footer carries the row count and each column's non-null count (free to take from a
        frame in memory), so readers can have them without decoding a column, plus whatever the
        writer adds (``footer``: the sync adds its ids digest)."""
        uri = self.uri(name)
        summary = {
            "rows": df.height,
            "non_null": non_null_counts(df),
            "write_id": uuid.uuid4().hex,  # tells this version from any other
            **(footer or {}),
        }
        opts = {
            "statistics": True,
            "compression": COMPRESSION,
            "metadata": {SUMMARY_KEY: orjson.dumps(summary).decode()},
        }
        if self.is_s3:
            if df.estimated_size() < 64 * 1024 * 1024:
                buf = io.BytesIO()
                df.write_parquet(buf, **opts)
                self.write_bytes(name, buf.getvalue())
            else:  # multipart upload: the object appears only when complete
                df.write_parquet(uri, storage_options=self.storage_options, **opts)
            return uri
        with _staged(Path(uri)) as (tmp, target):
            df.write_parquet(tmp, **opts)
            os.replace(tmp, target)
        return uri

    def footer(self, name: str) -> dict[str, Any]:
        """What ``write_parquet`` left in the footer: ``rows``, ``non_null`` (per column), ``write_id`` and
        what the writer added (``ids_digest``, see ``braze.identifiers.id_footer``); empty for a file written some other way."""
        meta = pl.read_parquet_metadata(self.uri(name), storage_options=self.storage_options)
        return _summary(meta)

    def _pinned(self, name: str) -> IO[bytes]:
        """The object as it is now, to be read later: locally an open file (a writer renaming a
        new version over it leaves this one readable through the handle); on S3 a copy in a
        nameless temporary file (one GET is one version; memory stays flat whatever its size,
        and the copy goes when the handle does)."""
        try:
            if not self.is_s3:
                return open(self.uri(name), "rb")
            body = self._s3_body(name)
            copy = tempfile.TemporaryFile()
            shutil.copyfileobj(body, copy, SPOOL_CHUNK)
            copy.seek(0)
            return copy
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{self.uri(name)} does not exist (materialize it first)"
            ) from None

    def scan_parquet(self, name: str | list[str]) -> pl.LazyFrame:
        """A lazy scan of one file pinned to the version there now, or of several files in place.

        A scan of a path reads the footer now and the data at collect time; another run replacing
        the file in between would make it read one version's pages with the other's footer. One
        file is therefore scanned through a handle opened now. Lists name files that are never
        rewritten (journal entries, state parts, Currents hours), and may be long: read in place."""
        if isinstance(name, list):
            uris = [self.uri(n) for n in name]
            return pl.scan_parquet(uris, storage_options=self.storage_options)
        return pl.scan_parquet(self._pinned(name))

    def snapshot(self, name: str) -> Snapshot:
        """One version of a file: its rows (lazy) and its footer, read from the same version (a
        footer that describes the rows, e.g. their ids digest, must not come from a newer file)."""
        f = self._pinned(name)
        footer = _summary(pl.read_parquet_metadata(f))
        f.seek(0)  # a scan starts where the handle stands
        return Snapshot(pl.scan_parquet(f), footer)

    def read_parquet(self, name: str) -> pl.DataFrame:
        """The whole file as it is now. Read in one go (one open file, one GET), so a writer
        replacing it meanwhile cannot mix two versions (a lazy scan reads the footer first and
        the data later, and can)."""
        try:
            data = self.read_bytes(name)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{self.uri(name)} does not exist (materialize it first)"
            ) from None
        return pl.read_parquet(io.BytesIO(data))

    # -- tables (named datasets the assets produce) ---------------------------------------------
    def write_table(self, table: str, df: pl.DataFrame, footer: dict | None = None) -> str:
        return self.write_parquet(self.table_name(table), df, footer)

    def table_exists(self, table: str) -> bool:
        return self.exists(self.table_name(table))

    def _existing_table(self, table: str) -> str:
        if not self.table_exists(table):
            raise FileNotFoundError(
                f"table {table!r} is not in {self.root} yet: materialize the asset {table!r} first"
            )
        return self.table_name(table)

    def scan_table(self, table: str) -> pl.LazyFrame:
        return self.scan_parquet(self._existing_table(table))

    def table_snapshot(self, table: str) -> Snapshot:
        return self.snapshot(self._existing_table(table))

    def read_table(self, table: str) -> pl.DataFrame:
        return self.read_parquet(self._existing_table(table))
