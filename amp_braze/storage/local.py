"""A storage root on a local folder.

An object is written to a temporary file beside its target (same filesystem) and renamed over it,
so a reader sees the old file or the new one; a create-only write links the temporary file to its
name, which fails when the name exists. Temporary files are dot-files, which listing skips.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import polars as pl

from amp_braze.failpoints import failpoint
from amp_braze.storage.base import Storage, _not_materialized


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


class LocalStorage(Storage):
    """A storage root that is a folder on this machine."""

    is_s3 = False

    def _path(self, name: str) -> Path:
        return Path(self.uri(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        with _staged(self._path(name)) as (tmp, target):
            _write_synced(tmp, data)
            os.replace(tmp, target)

    def create_bytes(self, name: str, data: bytes) -> bool:
        with _staged(self._path(name)) as (tmp, target):
            _write_synced(tmp, data)
            failpoint("storage.create_staged")
            try:
                os.link(tmp, target)  # fails if the target exists
            except FileExistsError:
                return False
            return True

    def read_bytes(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def versions(self, prefix: str) -> dict[str, str]:
        """Size and modification time per file."""
        base = self._path(prefix.strip("/"))
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
        self._path(name).unlink(missing_ok=True)

    def remove_empty_folders(self, prefix: str) -> None:
        base = self._path(prefix.strip("/"))
        if not base.is_dir():
            return
        for p in sorted(base.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()

    def remove_stale_temp_files(self, prefix: str, older_than_seconds: float = 600.0) -> int:
        """The temporary files of writes killed mid-way."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        base = self._path(prefix.strip("/"))
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

    def _write_parquet_file(self, name: str, df: pl.DataFrame, options: dict[str, Any]) -> None:
        with _staged(self._path(name)) as (tmp, target):
            df.write_parquet(tmp, **options)
            os.replace(tmp, target)

    @contextmanager
    def _staged_file(self, name: str) -> Iterator[Path]:
        with _staged(self._path(name)) as (tmp, target):
            yield tmp
            os.replace(tmp, target)

    @contextmanager
    def local_file(self, name: str) -> Iterator[Path]:
        path = self._path(name)
        if not path.exists():
            raise _not_materialized(str(path))
        yield path

    def _pinned(self, name: str) -> IO[bytes]:
        """An open file: a writer renaming a new version over it leaves this one readable
        through the handle."""
        return open(self.uri(name), "rb")
