"""The ledger of one event stream: every ``event_id`` Braze accepted, and those a crash left in
doubt. Never changed in place. Layout under ``<storage>/events/<stream>/``::

    ledger/parts/<token>.parquet        event_id, status, row_hash; parts hold disjoint ids
    ledger/v000007/manifest.json        create-only (``VersionedManifests``): names the parts
    journal/e000000000042.parquet       create-only, numbered in the order written

While a run sends, it appends to the journal: an **intent** before each window goes out (the ids
and their rows' hashes), **accepted** ids as Braze confirms them, and at the end what was
**settled** otherwise (``unsent``: Braze refused it or it never left, so it is not in Braze;
``uncertain``: no answer came). Folding the journal (the next run, under the lease) makes each
id of an intent ``sent`` if accepted, dropped if unsent, and ``uncertain`` otherwise: a run killed
mid-window leaves its in-flight ids uncertain, never sent twice by default.

A commit adds one part with the ids folded in (a run's new ids), so its cost is the new rows, not
the ledger's size; a change of an id already held (an uncertain id resent and accepted) or too
many parts rewrites the ledger as one part.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import polars as pl

from amp_braze.storage import Storage, VersionedManifests
from amp_braze.storage.journal import Journal, entry_bytes

EID, STATUS, HASH = "event_id", "status", "row_hash"
SENT, UNCERTAIN, UNSENT = "sent", "uncertain", "unsent"
INTENT, ACCEPTED, SETTLED = "intent", "accepted", "settled"
_KIND = "__kind"
MAX_PARTS = 16
SCHEMA = {EID: pl.String, STATUS: pl.String, HASH: pl.UInt64}
SCHEMA_IH = {EID: pl.String, HASH: pl.UInt64}  # an intent: ids and their rows' hashes
HASH_BASIS = f"polars-{pl.__version__}"  # row hashes compare only under the same polars


class LedgerMovedError(RuntimeError):
    """The ledger was committed past this writer's journal entry while it wrote it."""


@dataclass
class LedgerView:
    version: int
    folded_through: int
    pending: list[str]
    frame: pl.LazyFrame  # event_id, status, row_hash: pending entries folded in
    parts: list[str] = field(default_factory=list)
    hash_basis: str = HASH_BASIS
    folded: pl.DataFrame | None = None  # the pending entries folded (``unsent`` ids included)


def fold(entries: list[tuple[str, pl.DataFrame]]) -> pl.DataFrame:
    """event_id, status, row_hash of the ids these journal entries name (see the module)."""

    def of(kind: str, cols: list[str]) -> pl.DataFrame:
        frames = [df.select(cols) for k, df in entries if k == kind]
        empty = pl.DataFrame(schema={c: SCHEMA.get(c, pl.String) for c in cols})
        return pl.concat(frames) if frames else empty

    intents = of(INTENT, [EID, HASH]).unique(EID, keep="last")
    accepted = of(ACCEPTED, [EID]).unique().with_columns(pl.lit(True).alias("__ok"))
    settled = of(SETTLED, [EID, STATUS]).unique(EID, keep="last").rename({STATUS: "__settled"})
    status = (
        pl.when(pl.col("__ok"))
        .then(pl.lit(SENT))
        .when(pl.col("__settled") == UNSENT)
        .then(pl.lit(UNSENT))
        .otherwise(pl.lit(UNCERTAIN))
    )
    return (
        intents.join(accepted, on=EID, how="left")
        .join(settled, on=EID, how="left")
        .select(EID, status.alias(STATUS), HASH)
    )


def _over(held: pl.LazyFrame, folded: pl.DataFrame) -> pl.LazyFrame:
    """The ledger with folded entries over it: each id they name takes its new status, and an
    ``unsent`` one leaves the ledger (it is sent again)."""
    return pl.concat(
        [held.join(folded.lazy().select(EID), on=EID, how="anti"),
         folded.lazy().filter(pl.col(STATUS) != UNSENT)]
    )  # fmt: skip


class Ledger:
    """The ledger of one stream, under ``folder`` (``events/<stream>``)."""

    def __init__(self, storage: Storage, folder: str):
        self.storage = storage
        self.folder = folder
        self.manifests = VersionedManifests(storage, f"{folder}/ledger")
        self.journal = Journal(storage, f"{folder}/journal")

    def _part(self, name: str) -> str:
        return f"{self.folder}/ledger/parts/{name}"

    def _parts(self, parts: list[str]) -> pl.LazyFrame:
        if not parts:
            return pl.LazyFrame(schema=SCHEMA)
        return self.storage.scan_parquet([self._part(p) for p in parts])

    def _entry(self, name: str) -> tuple[str, pl.DataFrame]:
        df = self.storage.scan_parquet(name).collect()
        kind = df.get_column(_KIND)[0] if df.height else ACCEPTED
        return kind, df.drop(_KIND)

    def current(self) -> LedgerView:
        entries = self.journal.entries()  # listed first: see SyncState.current
        version, man = self.manifests.newest()
        through = int(man.get("folded_through", 0))
        parts = list(man.get("parts", []))
        frame = self._parts(parts)
        pending = [n for n in entries if Journal.seq_of(n) > through]
        new = fold([self._entry(n) for n in pending]) if pending else None
        if new is not None:
            frame = _over(frame, new)
        basis = man.get("hash_basis", HASH_BASIS)
        return LedgerView(version, through, pending, frame, parts, basis, new)

    # -- the journal ---------------------------------------------------------------------------
    def _append(self, kind: str, rows: pl.DataFrame) -> str:
        floor = int(self.manifests.newest()[1].get("folded_through", 0))
        data = entry_bytes(rows.with_columns(pl.lit(kind).alias(_KIND)))
        name, seq = self.journal.append(data, floor, f"ledger.{kind}")
        if seq <= int(self.manifests.newest()[1].get("folded_through", 0)):
            self.storage.delete(name)
            raise LedgerMovedError(
                f"the event ledger under {self.storage.uri(self.folder)} was committed by "
                "another writer while this run wrote to it; it stops sending"
            )
        return name

    def write_intent(self, ids: pl.Series, hashes: pl.Series) -> str:
        return self._append(INTENT, pl.DataFrame({EID: ids, HASH: hashes}, schema=SCHEMA_IH))

    def write_accepted(self, ids: list[str]) -> str:
        return self._append(ACCEPTED, pl.DataFrame({EID: ids}, schema={EID: pl.String}))

    def write_settled(self, unsent: list[str], uncertain: list[str]) -> str:
        ids = [*unsent, *uncertain]
        states = [UNSENT] * len(unsent) + [UNCERTAIN] * len(uncertain)
        return self._append(
            SETTLED, pl.DataFrame({EID: ids, STATUS: states}, schema={EID: pl.String,
                                                                       STATUS: pl.String})
        )  # fmt: skip

    # -- versions ------------------------------------------------------------------------------
    def commit(self, attempts: int = 5) -> LedgerView:
        """Fold the pending entries into a new version (see the module for its cost)."""
        for _ in range(attempts):
            view = self.current()
            if not view.pending:
                return view
            through = max(Journal.seq_of(n) for n in view.pending)
            assert view.folded is not None
            old = self._parts(view.parts)
            touched = old.join(view.folded.lazy().select(EID), on=EID, how="semi")
            rewrite = len(view.parts) >= MAX_PARTS or touched.select(pl.len()).collect().item() > 0
            part = f"{uuid.uuid4().hex[:16]}.parquet"
            if rewrite:  # the version is what the view showed: one part
                table, parts = view.frame.collect(), [part]
            else:
                table, parts = view.folded.filter(pl.col(STATUS) != UNSENT), [*view.parts, part]
            self.storage.write_parquet(self._part(part), table)
            manifest = {
                "version": view.version + 1,
                "parts": parts,
                "folded_through": through,
                "hash_basis": HASH_BASIS,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            if self.manifests.create(view.version + 1, manifest, []):
                return LedgerView(view.version + 1, through, [], self._parts(parts), parts)
            self.storage.delete(self._part(part))
        raise RuntimeError(f"could not commit the event ledger under {self.folder}")

    def prune(self, keep: int = 3) -> int:
        """Old versions, folded journal entries and parts no kept version names; returns the
        entries deleted."""
        version, newest = self.manifests.newest()
        if not version:
            return 0
        through = int(newest.get("folded_through", 0))
        self.manifests.prune(keep)
        named = {p for v in self.manifests.versions() for p in self.manifests.read(v)["parts"]}
        for name in self.storage.list(f"{self.folder}/ledger/parts"):
            if name.rsplit("/", 1)[-1] not in named:
                self.storage.delete(name)
        done = [n for n in self.journal.entries() if Journal.seq_of(n) <= through]
        for name in done:
            self.storage.delete(name)
        self.storage.remove_empty_folders(f"{self.folder}/journal")
        self.storage.remove_empty_folders(f"{self.folder}/ledger")
        return len(done)
