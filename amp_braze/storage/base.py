"""What every storage root offers, written once: names, JSON, Parquet footers, tables, snapshots.

A back-end (``LocalStorage``, ``S3Storage``) supplies the few operations that differ between a
local folder and an object store: bytes in and out (plain and create-only), listing, deleting,
tidying what killed writes left, writing a Parquet file atomically and pinning one version of a
file for a later read. ``Storage(root)`` picks the back-end whose ``scheme`` the root starts
with, as ``pathlib.Path`` picks its flavour, so callers name one class whatever the root is.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import orjson
import polars as pl

from amp_braze.storage import parts

TABLES = "tables"
COMPRESSION = "lz4"  # the planner reads whole tables every sync: LZ4 decodes faster than zstd
SUMMARY_KEY = "amp_braze.summary"


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


def _not_materialized(uri: str) -> FileNotFoundError:
    return FileNotFoundError(f"{uri} does not exist (materialize it first)")


class Storage(ABC):
    """One storage root: a local folder or ``s3://bucket/prefix``. Cheap to create.

    Writes are atomic: a reader sees the old object or the new one, never half of one. Names are
    relative paths such as ``sources/pos`` or ``sync/state/v000003/part-0000``; tables get the
    ``.parquet`` suffix."""

    is_s3: ClassVar[bool] = False
    scheme: ClassVar[str] = ""  # the roots a back-end serves start with this ("": local paths)
    _backends: ClassVar[list[type[Storage]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Storage._backends.append(cls)  # the package imports every back-end with this module

    def __new__(cls, root: str | Path) -> Storage:
        if cls is Storage:
            served = [b for b in Storage._backends if str(root).startswith(b.scheme)]
            cls = max(served, key=lambda b: len(b.scheme))
        return super().__new__(cls)

    def __init__(self, root: str | Path):
        self.root = str(root).rstrip("/")
        self._shared: Storage | None = None

    def shard(self, name: str, shards: int) -> Storage:
        """The root of one shard's own tables and sync state (``shards/<shards>/<name>/``: a
        split in another number of shards has folders of its own); what every shard reads or
        holds together (feeds, identity, Currents, leases) stays in ``shared``."""
        part = Storage(f"{self.root}/shards/{shards}/{name}")
        part._shared = self
        return part

    @property
    def shared(self) -> Storage:
        """The root of what all shards share: this root itself unless it is a shard's."""
        return self._shared or self

    def __getnewargs__(self) -> tuple[str]:
        return (self.root,)  # copies and pickles are made through __new__ like the original

    def __repr__(self) -> str:
        return f"Storage({self.root!r})"

    @property
    def storage_options(self) -> dict[str, str] | None:
        """What polars needs to read and write this root's URIs itself (None: local paths)."""
        return None

    # -- naming ---------------------------------------------------------------------------------
    def uri(self, name: str) -> str:
        """The full path or URL of an object under the root."""
        name = name.strip("/")
        return f"{self.root}/{name}"

    @staticmethod
    def table_name(table: str) -> str:
        return f"{TABLES}/{table.strip('/')}.parquet"

    # -- bytes (per back-end) ---------------------------------------------------------------------
    @abstractmethod
    def write_bytes(self, name: str, data: bytes) -> None: ...

    @abstractmethod
    def create_bytes(self, name: str, data: bytes) -> bool:
        """Write only if nothing is there yet (atomically); False if the object already exists.

        The versioned manifests (``amp_braze.storage.manifest``) and the sync journal use this
        so that two racing writers cannot both win."""

    @abstractmethod
    def read_bytes(self, name: str) -> bytes: ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def versions(self, prefix: str) -> dict[str, str]:
        """Per object under a folder (names relative to the root, temporary files excluded), a
        string that changes whenever the object is rewritten."""

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def remove_empty_folders(self, prefix: str) -> None:
        """Drop folders left empty under a folder (object stores have none)."""

    @abstractmethod
    def remove_stale_temp_files(self, prefix: str, older_than_seconds: float = 600.0) -> int:
        """Delete what writes killed mid-way left under a folder, only what is older than
        ``older_than_seconds`` (a write still under way is never touched). Returns how many."""

    @abstractmethod
    def _write_parquet_file(self, name: str, df: pl.DataFrame, options: dict[str, Any]) -> None:
        """Write ``df`` to ``name`` atomically with polars' ``write_parquet`` options."""

    @abstractmethod
    def _staged_file(self, name: str) -> contextlib.AbstractContextManager[Path]:
        """A local path to write ``name``'s new version to; published as ``name`` when the block
        ends without an error, and gone either way."""

    @abstractmethod
    def _pinned(self, name: str) -> IO[bytes]:
        """The object as it is now, to be read later (a writer replacing it meanwhile does not
        change what this handle reads); FileNotFoundError if there is none."""

    @contextlib.contextmanager
    def local_file(self, name: str) -> Iterator[Path]:
        """A path on this machine to read ``name`` from, for engines that read paths (DuckDB's
        ``read_parquet``): a temporary copy of the version there now, gone when the block ends.
        A local root hands out the file itself, so keep to files that are written once."""
        with self._pinned_or_missing(name) as src, tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            with open(path, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            yield path

    # -- shared ---------------------------------------------------------------------------------
    def write_json(self, name: str, value: Any) -> None:
        self.write_bytes(name, orjson.dumps(value, option=orjson.OPT_INDENT_2))

    def read_json(self, name: str, default: Any = None) -> Any:
        try:
            return orjson.loads(self.read_bytes(name))
        except FileNotFoundError:
            return default

    def list(self, prefix: str) -> list[str]:
        """Names (relative to the root) of the objects under a folder, sorted; temp files excluded."""
        return sorted(self.versions(prefix))

    def delete_prefix(self, prefix: str) -> None:
        for name in self.list(prefix):
            self.delete(name)

    # -- parquet --------------------------------------------------------------------------------
    def write_parquet(self, name: str, df: pl.DataFrame, footer: dict | None = None) -> str:
        """Write a frame atomically to ``name`` (a path ending in .parquet); returns its URI.

        The footer carries the row count and each column's non-null count (free to take from a
        frame in memory), so readers can have them without decoding a column, plus whatever the
        writer adds (``footer``: the sync adds its ids digest)."""
        summary = {
            "rows": df.height,
            "non_null": non_null_counts(df),
            "write_id": uuid.uuid4().hex,  # tells this version from any other
            **(footer or {}),
        }
        options = {
            "statistics": True,
            "compression": COMPRESSION,
            "metadata": {SUMMARY_KEY: orjson.dumps(summary).decode()},
        }
        self._write_parquet_file(name, df, options)
        return self.uri(name)

    def sink_parquet(
        self, name: str, lf: pl.LazyFrame, rows: int, non_null: dict[str, int], footer: dict
    ) -> str:
        """Write a lazy frame by polars' streaming engine (in bounded memory, on every core) into
        one Parquet file, atomically; the caller knows ``rows`` and ``non_null`` (e.g. from the
        version it changes) so the footer is written with the rows, not after another pass."""
        summary = {"rows": rows, "non_null": non_null, "write_id": uuid.uuid4().hex, **footer}
        with self._staged_file(name) as path:
            lf.sink_parquet(
                path,
                compression=COMPRESSION,
                statistics=True,
                metadata={SUMMARY_KEY: orjson.dumps(summary).decode()},
            )
        return self.uri(name)

    def footer(self, name: str) -> dict[str, Any]:
        """What ``write_parquet`` left in the footer: ``rows``, ``non_null`` (per column), ``write_id`` and
        what the writer added (``ids_digest``, see ``braze.identifiers.id_footer``); empty for a file written some other way."""
        meta = pl.read_parquet_metadata(self.uri(name), storage_options=self.storage_options)
        return _summary(meta)

    def _pinned_or_missing(self, name: str) -> IO[bytes]:
        try:
            return self._pinned(name)
        except FileNotFoundError:
            raise _not_materialized(self.uri(name)) from None

    def scan_parquet(self, name: str | list[str]) -> pl.LazyFrame:
        """A lazy scan of one file pinned to the version there now, or of several files in place.

        A scan of a path reads the footer now and the data at collect time; another run replacing
        the file in between would make it read one version's pages with the other's footer. One
        file is therefore scanned through a handle opened now. Lists name files that are never
        rewritten (journal entries, state parts, Currents hours), and may be long: read in place."""
        if isinstance(name, list):
            uris = [self.uri(n) for n in name]
            return pl.scan_parquet(uris, storage_options=self.storage_options)
        return self.snapshot(name).frame

    def snapshot(self, name: str) -> Snapshot:
        """One version of a file: its rows (lazy) and its footer, read from the same version (a
        footer that describes the rows, e.g. their ids digest, must not come from a newer file)."""
        f = self._pinned_or_missing(name)
        footer = _summary(pl.read_parquet_metadata(f))
        f.seek(0)  # a scan starts where the handle stands
        frame = pl.scan_parquet(f)
        if parts.PARTS_KEY in footer:  # a head: the table is in the parts it names
            frame = parts.assemble(self, footer[parts.PARTS_KEY], frame)
        return Snapshot(frame, footer)

    def read_parquet(self, name: str) -> pl.DataFrame:
        """The whole file as it is now. Read in one go (one open file, one GET), so a writer
        replacing it meanwhile cannot mix two versions (a lazy scan reads the footer first and
        the data later, and can)."""
        try:
            data = self.read_bytes(name)
        except FileNotFoundError:
            raise _not_materialized(self.uri(name)) from None
        footer = _summary(pl.read_parquet_metadata(io.BytesIO(data)))
        if parts.PARTS_KEY in footer:
            head = pl.scan_parquet(io.BytesIO(data))
            return parts.assemble(self, footer[parts.PARTS_KEY], head).collect()
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
