"""A storage root on S3 (``s3://bucket/prefix``), or any server that speaks its API.

An object only becomes visible when its upload completes, so plain writes are atomic; a
create-only write is a conditional PUT (``If-None-Match: *``). ``AWS_ENDPOINT_URL`` points
everything at a local S3 server.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import polars as pl

from amp_braze.storage.base import Storage

SPOOL_CHUNK = 8 << 20  # bytes copied at a time from an S3 object to its local copy
MULTIPART_FROM = 64 * 1024 * 1024  # frames larger in memory go up as a multipart upload
_CREATE_LOST = ("PreconditionFailed", "412", "ConditionalRequestConflict")


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


def _error_code(e: Exception) -> str | None:
    """The S3 error code of a botocore ClientError (None for anything else)."""
    return getattr(e, "response", {}).get("Error", {}).get("Code")


class S3Storage(Storage):
    """A storage root that is a bucket and a key prefix. The S3 client is made on first use."""

    is_s3 = True
    scheme = "s3://"

    def __init__(self, root: str | Path):
        super().__init__(root)
        self.bucket, self.prefix = split_s3(self.root)

    @cached_property
    def _s3(self) -> Any:
        return s3_client()

    @property
    def storage_options(self) -> dict[str, str]:
        return s3_storage_options()

    def _key(self, name: str) -> str:
        name = name.strip("/")
        return f"{self.prefix}/{name}" if self.prefix else name

    def write_bytes(self, name: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)

    def create_bytes(self, name: str, data: bytes) -> bool:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(name), Body=data, IfNoneMatch="*")
            return True
        except Exception as e:  # botocore ClientError
            if _error_code(e) in _CREATE_LOST:
                return False
            raise

    def read_bytes(self, name: str) -> bytes:
        return self._body(name).read()

    def _body(self, name: str) -> Any:
        """The S3 object's body as a stream (one GET: one version of the object)."""
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        except self._s3.exceptions.NoSuchKey:
            raise FileNotFoundError(self.uri(name)) from None

    def exists(self, name: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(name))
            return True
        except Exception as e:  # botocore ClientError 404
            if _error_code(e) in ("404", "NoSuchKey"):
                return False
            raise

    def versions(self, prefix: str) -> dict[str, str]:
        """Size, modification time and ETag per object."""
        out = {}
        paginator = self._s3.get_paginator("list_objects_v2")
        key_prefix = self._key(prefix.strip("/")) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key_prefix):
            for o in page.get("Contents", []):
                out[o["Key"][strip:]] = f"{o['Size']}:{o['LastModified'].isoformat()}:{o['ETag']}"
        return out

    def delete(self, name: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(name))

    def remove_empty_folders(self, prefix: str) -> None:
        return None  # an object store has no folders

    def remove_stale_temp_files(self, prefix: str, older_than_seconds: float = 600.0) -> int:
        """Multipart uploads never completed."""
        cutoff = time.time() - older_than_seconds
        try:
            ups = self._s3.list_multipart_uploads(
                Bucket=self.bucket, Prefix=self._key(prefix.strip("/")) + "/"
            )
        except Exception:  # not every S3 implementation lists uploads; lifecycle rules do it
            return 0
        removed = 0
        for up in ups.get("Uploads", []):
            if up["Initiated"].timestamp() < cutoff:
                self._s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                )
                removed += 1
        return removed

    def _write_parquet_file(self, name: str, df: pl.DataFrame, options: dict[str, Any]) -> None:
        if df.estimated_size() < MULTIPART_FROM:
            buf = io.BytesIO()
            df.write_parquet(buf, **options)
            self.write_bytes(name, buf.getvalue())
        else:  # multipart upload: the object appears only when complete
            df.write_parquet(self.uri(name), storage_options=self.storage_options, **options)

    @contextmanager
    def _staged_file(self, name: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "part.parquet"
            yield path
            # upload_file goes up in parts above its threshold: the object appears only when whole
            self._s3.upload_file(str(path), self.bucket, self._key(name))

    def _pinned(self, name: str) -> IO[bytes]:
        """A copy in a nameless temporary file: one GET is one version; memory stays flat
        whatever its size, and the copy goes when the handle does."""
        body = self._body(name)
        copy = tempfile.TemporaryFile()
        shutil.copyfileobj(body, copy, SPOOL_CHUNK)
        copy.seek(0)
        return copy
