"""A create-only, numbered journal in a storage folder: entries ordered as they were written,
across runs, with no two writers on one number (the sync state's and the event ledgers')."""

from __future__ import annotations

import io

import polars as pl

from amp_braze.failpoints import failpoint
from amp_braze.storage.base import COMPRESSION, Storage


def entry_bytes(rows: pl.DataFrame) -> bytes:
    """A journal entry's Parquet bytes (small: written whole, create-only)."""
    buf = io.BytesIO()
    rows.write_parquet(buf, compression=COMPRESSION, statistics=False)
    return buf.getvalue()


class Journal:
    """Entries ``<folder>/e000000000042.parquet``: a number taken twice fails the second writer's
    create, which takes the next one."""

    def __init__(self, storage: Storage, folder: str):
        self.storage = storage
        self.folder = folder

    def name_of(self, seq: int) -> str:
        return f"{self.folder}/e{seq:012d}.parquet"

    @staticmethod
    def seq_of(name: str) -> int:
        return int(name.rsplit("/", 1)[-1][1:].split(".")[0])

    def entries(self) -> list[str]:
        """Every entry, in the order written."""
        names = [n for n in self.storage.list(self.folder) if n.endswith(".parquet")]
        return sorted(names, key=self.seq_of)

    def append(self, data: bytes, floor: int, failpoint_name: str) -> tuple[str, int]:
        """Write ``data`` under the next free number above every entry and above ``floor`` (what
        a committed version has folded in); returns (name, number)."""
        seq = max([*(self.seq_of(n) for n in self.entries()), floor]) + 1
        for _ in range(1000):
            name = self.name_of(seq)
            if self.storage.create_bytes(name, data):
                failpoint(failpoint_name)
                return name, seq
            seq += 1
        raise RuntimeError(f"could not append to {self.folder}")  # pragma: no cover
