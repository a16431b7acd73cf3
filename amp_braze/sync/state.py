"""Sync state: per user, the value of each managed attribute that Braze last accepted.

Never changed in place. Layout under ``<storage>/sync/<destination>/``::

    state/v000007/part-00000-<token>.parquet  a full snapshot, its name unique to the writer
    state/v000007/manifest.json               create-only, names the parts; the version exists
                                              once this does, and is exactly one writer's work
                                              (``amp_braze.storage.manifest``)
    journal/e000000000042.parquet             create-only, numbered in the order written

The journal holds two kinds of entry, appended while a sync runs:

- an **intent**, written *before* a window of plan rows is sent: which attributes of which users
  are about to go out. Until a checkpoint confirms them, those values are *uncertain*: Braze may
  hold the old value or the new one.
- a **checkpoint**, written after Braze accepted rows: the values it accepted.

Entry numbers come from create-only writes (a number taken twice fails the second writer, which
takes the next), so they order entries as they were written, across runs. Reading the state takes
the newest version and folds in (``amp_braze.sync.journal_fold``) every entry numbered above the
version's ``folded_through``: nothing
Braze accepted is lost, and what a crashed run may or may not have applied is marked uncertain
(``__u_<attribute>``), so the next plan sends the wanted value whatever it is (null included).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property

import polars as pl

from amp_braze.braze.identifiers import ID, id_footer
from amp_braze.braze.plan_columns import FLAG
from amp_braze.failpoints import failpoint
from amp_braze.storage import Storage, VersionedManifests
from amp_braze.storage.journal import Journal, entry_bytes
from amp_braze.sync.journal_fold import CHECKPOINT, INTENT, Entry, fold_journal
from amp_braze.sync.plan import Side

_KIND = "__kind"  # the entry's kind, a column of its file


@dataclass
class StateView:
    version: int
    folded_through: int  # journal entries up to this number are in the version
    pending: list[str]  # journal entries not yet folded (a crashed or running sync's)
    frame: pl.LazyFrame  # the state with pending entries folded in, sorted by __id
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


class StateMovedError(RuntimeError):
    """The state was committed past this writer's journal entry while it wrote it."""


class SyncState:
    """The sync state of one destination (one Braze workspace and identifier kind)."""

    def __init__(self, storage: Storage, destination: str):
        self.storage = storage
        self.base = f"sync/{destination}"
        self.manifests = VersionedManifests(storage, f"{self.base}/state")
        self._journal = Journal(storage, f"{self.base}/journal")

    # -- names -------------------------------------------------------------------------------------
    def _version_dir(self, version: int) -> str:
        return self.manifests.folder_of(version)

    entry_seq = staticmethod(Journal.seq_of)

    def versions(self) -> list[int]:
        return self.manifests.versions()

    def journal(self) -> list[str]:
        """Every journal entry, in the order written."""
        return self._journal.entries()

    # -- reading -----------------------------------------------------------------------------------
    def manifest(self, version: int) -> dict:
        return self.manifests.read(version)

    def _newest(self) -> tuple[int, dict]:
        return self.manifests.newest()

    def read_entry(self, name: str) -> Entry:
        df = self.storage.scan_parquet(name).collect()
        kind = df.get_column(_KIND)[0] if df.height else CHECKPOINT
        return Entry(self.entry_seq(name), kind, df.drop(_KIND))

    def current(self) -> StateView:
        # The journal is listed before the manifest is read: an entry pruned in between is in
        # the newer manifest, so nothing is ever seen as neither folded nor pending.
        journal = self.journal()
        version, man = self._newest()
        folded_through = int(man.get("folded_through", 0))
        frame, footer = None, {}
        if version:
            parts = [f"{self._version_dir(version)}/{p}" for p in man["parts"]]
            if len(parts) == 1:  # pinned: a prune of this version meanwhile cannot pull it away
                snap = self.storage.snapshot(parts[0])
                frame, footer = snap.frame, snap.footer
            elif parts:
                frame = self.storage.scan_parquet(parts)
        pending = [n for n in journal if self.entry_seq(n) > folded_through]
        if pending:  # a crashed or running sync's work: fold it in (in memory)
            base = frame.collect() if frame is not None else None
            frame = fold_journal(base, [self.read_entry(n) for n in pending]).lazy()
        if frame is None:
            frame = pl.LazyFrame({ID: pl.Series([], dtype=pl.String)})
        return StateView(version, folded_through, pending, frame, footer)

    # -- the journal -------------------------------------------------------------------------------
    def _append(self, kind: str, rows: pl.DataFrame) -> str:
        """Write one journal entry under the next free number (create-only, so two writers never
        share one), numbered above everything folded or written so far."""
        data = entry_bytes(rows.with_columns(pl.lit(kind).alias(_KIND)))
        floor = int(self._newest()[1].get("folded_through", 0))
        name, seq = self._journal.append(data, floor, f"journal.{kind}")
        # A writer that stalled between choosing its number and writing it could land below a
        # version committed meanwhile; such an entry is treated as folded, so say so loudly.
        if seq <= int(self._newest()[1].get("folded_through", 0)):
            self.storage.delete(name)
            raise StateMovedError(
                f"the sync state under {self.storage.uri(self.base)} was committed by another "
                "writer while this run wrote to it; its unconfirmed rows are sent again next run"
            )
        return name

    def write_intent(self, rows: pl.DataFrame) -> str:
        """Record, before sending, which attributes of which users are going out (``__id`` and
        flag columns)."""
        return self._append(
            INTENT, rows.select([ID] + [c for c in rows.columns if c.startswith(FLAG)])
        )

    def write_checkpoint(self, rows: pl.DataFrame) -> str:
        """Record values Braze accepted (``__id``, values and flag columns)."""
        return self._append(CHECKPOINT, rows)

    # -- versions ----------------------------------------------------------------------------------
    def write_version(self, version: int, table: pl.DataFrame, folded_through: int) -> bool:
        """Write ``table`` (sorted by __id) as ``version``; False if that version already exists
        (another writer's; this writer's part file is then removed)."""
        vdir = self._version_dir(version)
        part = f"part-00000-{uuid.uuid4().hex[:16]}.parquet"
        self.storage.write_parquet(f"{vdir}/{part}", table, id_footer(table))
        failpoint("commit.part_written")
        manifest = {
            "version": version,
            "parts": [part],
            "shards": 1,
            "rows": table.height,
            "columns": [c for c in table.columns if c != ID],
            "folded_through": folded_through,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return self.manifests.create(version, manifest, [part])

    def commit(self, attempts: int = 5) -> StateView:
        """Fold every pending entry into a new version. Safe against a racing commit: the
        manifest is created only if that version does not exist yet, else we re-read and retry."""
        for _ in range(attempts):
            view = self.current()
            if not view.pending and view.version:
                return view
            version = view.version + 1
            through = max([view.folded_through, *(self.entry_seq(n) for n in view.pending)])
            if self.write_version(version, view.table, through):
                failpoint("commit.manifest_written")
                return StateView(version, through, [], view.table.lazy())
        raise RuntimeError(
            f"could not commit sync state under {self.base} after {attempts} attempts"
        )

    def prune(self, keep: int) -> tuple[int, int]:
        """Delete all but the newest ``keep`` versions, and the journal entries the newest
        version has folded in; returns (versions, entries) deleted. Entries not folded yet (a
        running or crashed sync's) are never touched. Also removes temporary files that a write
        killed mid-way left behind."""
        version, newest = self.manifests.newest()
        if not version:
            return 0, 0
        through = int(newest.get("folded_through", 0))
        old = self.manifests.prune(keep)
        done = [n for n in self.journal() if self.entry_seq(n) <= through]
        for name in done:
            self.storage.delete(name)
        self.storage.remove_stale_temp_files(self.base)
        self.storage.remove_empty_folders(f"{self.base}/journal")
        self.storage.remove_empty_folders(self.manifests.folder)
        return len(old), len(done)
