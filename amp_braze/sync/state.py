"""Sync state: per user, the value of each managed attribute that Braze last accepted.

Never changed in place. Layout under ``<storage>/sync/<destination>/``::

    state/v000007/part-00000.parquet   a full snapshot (__id + one column per managed attribute)
    state/v000007/manifest.json        written last, create-only: the version exists once this does
    checkpoints/<run>/c000001.parquet  accepted plan rows, appended while a sync runs

Reading the state takes the newest version and folds in every checkpoint its manifest does not list
(a crashed run's work), so nothing Braze accepted is lost and at most the rows accepted since the
last checkpoint are sent again. ``part-<shard>`` leaves room to split the state by a hash of the
identifier later; today there is one shard.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from functools import cached_property

import orjson
import polars as pl

from amp_braze.braze.identifiers import ID
from amp_braze.braze.payload import flag
from amp_braze.storage import Storage
from amp_braze.sync.plan import Side


@dataclass
class StateView:
    version: int
    folded: list[str]  # checkpoint names already in this version
    pending: list[str]  # checkpoint names not yet folded (a crashed or running sync's)
    frame: pl.LazyFrame  # the state with pending checkpoints folded in, sorted by __id
    footer: dict = field(default_factory=dict)  # the version's Parquet footer, if not folded

    @cached_property
    def table(self) -> pl.DataFrame:
        return self.frame.collect()

    def side(self) -> Side:
        """The state as the planner reads it, with what the version's footer says (ids digest,
        rows) when it is read straight from one Parquet file."""
        footer = {} if self.pending else self.footer
        return Side(self.frame, ids_digest=footer.get("ids_digest"), rows=footer.get("rows"))

    @property
    def fingerprint(self) -> str:
        """Identifies exactly what this view contains; a plan is valid only against the same one."""
        digest = hashlib.sha1("\n".join(self.pending).encode()).hexdigest()[:12]
        return f"v{self.version}+{len(self.pending)}:{digest}"


def fold(state: pl.DataFrame | None, checkpoints: list[pl.DataFrame]) -> pl.DataFrame:
    """Apply checkpoints (in order) to a state table: each flagged value replaces the old one."""
    base = state if state is not None else pl.DataFrame({ID: pl.Series([], dtype=pl.String)})
    if not checkpoints:
        return base
    ck = pl.concat(checkpoints, how="diagonal_relaxed")
    attrs = [c for c in ck.columns if c != ID and not c.startswith("__")]
    for a in attrs:
        if flag(a) not in ck.columns:
            ck = ck.with_columns(pl.lit(False).alias(flag(a)))
    latest = ck.group_by(ID, maintain_order=True).agg(
        [pl.col(a).filter(pl.col(flag(a)).fill_null(False)).last().alias(a) for a in attrs]
        + [pl.col(flag(a)).fill_null(False).any().alias(flag(a)) for a in attrs]
    )
    casts = []
    for a in attrs:
        if a in base.columns and base.schema[a] != pl.Null and latest.schema[a] != base.schema[a]:
            casts.append(pl.col(a).cast(base.schema[a], strict=False))
    if casts:
        latest = latest.with_columns(casts)
    joined = base.join(latest, on=ID, how="full", coalesce=True, suffix="__ck")
    out = []
    for a in attrs:
        new = pl.col(f"{a}__ck") if a in base.columns else pl.col(a)
        old = pl.col(a) if a in base.columns else pl.lit(None)
        out.append(pl.when(pl.col(flag(a)).fill_null(False)).then(new).otherwise(old).alias(a))
    keep = [c for c in base.columns if c not in attrs]
    return joined.select([pl.col(c) for c in keep] + out).sort(ID)


class SyncState:
    """The sync state of one destination (one Braze workspace and identifier kind)."""

    def __init__(self, storage: Storage, destination: str):
        self.storage = storage
        self.base = f"sync/{destination}"

    # -- names -------------------------------------------------------------------------------------
    def _version_dir(self, version: int) -> str:
        return f"{self.base}/state/v{version:06d}"

    def versions(self) -> list[int]:
        out = []
        for name in self.storage.list(f"{self.base}/state"):
            parts = name.split("/")
            if parts[-1] == "manifest.json" and parts[-2].startswith("v"):
                out.append(int(parts[-2][1:]))
        return sorted(out)

    def checkpoints(self) -> list[str]:
        """Every checkpoint file, in the order they were written (run folder, then sequence)."""
        names = [n for n in self.storage.list(f"{self.base}/checkpoints") if n.endswith(".parquet")]
        return sorted(names, key=lambda n: (n.split("/")[-2], n))

    # -- reading -----------------------------------------------------------------------------------
    def manifest(self, version: int) -> dict:
        return orjson.loads(self.storage.read_bytes(f"{self._version_dir(version)}/manifest.json"))

    def current(self) -> StateView:
        versions = self.versions()
        if versions:
            version = versions[-1]
            man = self.manifest(version)
            parts = [f"{self._version_dir(version)}/{p}" for p in man["parts"]]
            frame = self.storage.scan_parquet(parts) if parts else None
            footer = self.storage.footer(parts[0]) if len(parts) == 1 else {}
            folded = list(man.get("folded_checkpoints", []))
        else:
            version, frame, folded, footer = 0, None, [], {}
        done = set(folded)
        pending = [c for c in self.checkpoints() if c not in done]
        if pending:  # a crashed or running sync's work: fold it in (in memory)
            base = frame.collect() if frame is not None else None
            frame = fold(base, [self.storage.scan_parquet(c).collect() for c in pending]).lazy()
        if frame is None:
            frame = pl.LazyFrame({ID: pl.Series([], dtype=pl.String)})
        return StateView(version, folded, pending, frame, footer)

    # -- writing -----------------------------------------------------------------------------------
    def write_checkpoint(self, run_id: str, seq: int, rows: pl.DataFrame) -> str:
        name = f"{self.base}/checkpoints/{run_id}/c{seq:06d}.parquet"
        self.storage.write_parquet(name, rows)
        return name

    def prune(self, keep: int) -> tuple[int, int]:
        """Delete all but the newest ``keep`` versions, and the checkpoint files the newest version
        has folded in; returns (versions, checkpoints) deleted. A folded checkpoint stays listed in
        the manifest, so one whose deletion failed is never applied twice; checkpoints not folded
        yet (a running or crashed sync's) are never touched."""
        versions = self.versions()
        if not versions:
            return 0, 0
        folded = set(self.manifest(versions[-1]).get("folded_checkpoints", []))
        old = versions[:-keep] if len(versions) > keep else []
        for v in old:
            vdir = self._version_dir(v)
            names = self.storage.list(vdir)
            for name in sorted(names, key=lambda n: n.endswith("manifest.json")):
                self.storage.delete(name)  # the manifest last: the version exists until then
        done = [c for c in self.checkpoints() if c in folded]
        for name in done:
            self.storage.delete(name)
        self.storage.remove_empty_folders(f"{self.base}/checkpoints")
        self.storage.remove_empty_folders(f"{self.base}/state")
        return len(old), len(done)

    def write_version(self, version: int, table: pl.DataFrame, folded: list[str]) -> bool:
        """Write ``table`` (sorted by __id) as ``version``; False if that version already exists."""
        vdir = self._version_dir(version)
        part = "part-00000.parquet"
        self.storage.write_parquet(f"{vdir}/{part}", table)
        manifest = {
            "version": version,
            "parts": [part],
            "shards": 1,
            "rows": table.height,
            "columns": [c for c in table.columns if c != ID],
            "folded_checkpoints": folded,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return self.storage.create_bytes(
            f"{vdir}/manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
        )

    def commit(self, attempts: int = 5) -> StateView:
        """Fold every pending checkpoint into a new version. Safe against a racing commit: the
        manifest is created only if that version does not exist yet, else we re-read and retry."""
        for _ in range(attempts):
            view = self.current()
            if not view.pending and view.version:
                return view
            version = view.version + 1
            folded = view.folded + view.pending
            if self.write_version(version, view.table, folded):
                return StateView(version, folded, [], view.table.lazy())
        raise RuntimeError(
            f"could not commit sync state under {self.base} after {attempts} attempts"
        )
