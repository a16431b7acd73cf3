"""Sync state: per user, the value of each managed attribute that Braze last accepted.

Never changed in place. Layout under ``<storage>/sync/<destination>/``::

    state/v000007/part-00000-<token>.parquet  a full snapshot, its name unique to the writer
    state/v000007/manifest.json               create-only, names the parts; the version exists
                                              once this does, and is exactly one writer's work
    journal/e000000000042.parquet             create-only, numbered in the order written

The journal holds two kinds of entry, appended while a sync runs:

- an **intent**, written *before* a window of plan rows is sent: which attributes of which users
  are about to go out. Until a checkpoint confirms them, those values are *uncertain*: Braze may
  hold the old value or the new one.
- a **checkpoint**, written after Braze accepted rows: the values it accepted.

Entry numbers come from create-only writes (a number taken twice fails the second writer, which
takes the next), so they order entries as they were written, across runs. Reading the state takes
the newest version and folds in every entry numbered above the version's ``folded_through``: nothing
Braze accepted is lost, and what a crashed run may or may not have applied is marked uncertain
(``__u_<attribute>``), so the next plan sends the wanted value whatever it is (null included).
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property

import orjson
import polars as pl

from amp_braze.braze.identifiers import ID, id_footer
from amp_braze.failpoints import failpoint
from amp_braze.plan_format import FLAG, flag
from amp_braze.sorted_rows import positions, put_columns
from amp_braze.storage import COMPRESSION, Storage
from amp_braze.sync.plan import Side, uncertain

INTENT, CHECKPOINT = "intent", "checkpoint"
_KIND = "__kind"
_KNOWN = "__k_"  # per attribute in a journal entry: the flagged value is what Braze holds
_SEQ = "__seq"


def state_attributes(columns: list[str]) -> list[str]:
    """The attribute columns of a state table (not the id, not the uncertainty marks)."""
    return [c for c in columns if not c.startswith("__")]


@dataclass(frozen=True)
class Entry:
    seq: int
    kind: str  # INTENT or CHECKPOINT
    frame: pl.DataFrame  # __id + flags (+ values for a checkpoint)


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


def _class(dtype: pl.DataType) -> str:
    """What Braze sees of a type: values of different classes are different values."""
    if dtype.is_numeric():
        return "number"
    if dtype.is_temporal():
        return "time"
    return str(dtype.base_type())


def _target_dtypes(base: pl.DataFrame, entries: list[Entry]) -> dict[str, pl.DataType]:
    """Per attribute, the type the folded column takes: the newest checkpoint's (what the SQL
    returns now); numbers of different widths take their common supertype."""
    out: dict[str, pl.DataType] = {a: base.schema[a] for a in state_attributes(base.columns)}
    for e in entries:  # oldest first: newer types overrule older ones
        if e.kind != CHECKPOINT:
            continue
        for a in state_attributes(e.frame.columns):
            new, old = e.frame.schema[a], out.get(a)
            if new == pl.Null:
                out.setdefault(a, new)
            elif old is None or old == pl.Null or _class(old) != _class(new):
                out[a] = new
            elif old != new:
                out[a] = pl.concat(
                    [pl.Series([], dtype=old), pl.Series([], dtype=new)], how="vertical_relaxed"
                ).dtype
    return out


def _entry_rows(e: Entry, attrs: list[str], target: dict[str, pl.DataType]) -> pl.DataFrame:
    """One entry as rows of the fold: per attribute its value, whether it was sent (flag) and
    whether the value is known to be what Braze holds (a checkpoint's value of a compatible type)."""
    cols: list[pl.Expr] = [pl.col(ID)]
    for a in attrs:
        dtype = target[a]
        sent = pl.col(flag(a)).fill_null(False) if flag(a) in e.frame.columns else pl.lit(False)
        has = e.kind == CHECKPOINT and a in e.frame.columns
        known = has and (
            dtype == pl.Null
            or e.frame.schema[a] == pl.Null
            or _class(e.frame.schema[a]) == _class(dtype)
        )
        value = pl.col(a).cast(dtype) if known else pl.lit(None, dtype)
        cols += [value.alias(a), sent.alias(flag(a)), pl.lit(known).alias(f"{_KNOWN}{a}")]
    return e.frame.select(cols).with_columns(pl.lit(e.seq, pl.Int64).alias(_SEQ))


def fold_journal(state: pl.DataFrame | None, entries: list[Entry]) -> pl.DataFrame:
    """Apply journal entries, in order, to a state table.

    Per user and attribute, the last entry that sent it decides: a checkpoint sets the value it
    recorded and clears any uncertainty; an intent (sent, outcome unknown) leaves the last known
    value and marks it uncertain. When an attribute's type changed (the SQL now returns text where
    it returned numbers), old values of the other type are dropped and marked uncertain, so the next
    plan sends the new ones. Uncertainty columns are kept only where some user has one."""
    base = state if state is not None else pl.DataFrame({ID: pl.Series([], dtype=pl.String)})
    entries = sorted(entries, key=lambda e: e.seq)
    if not entries:
        return base
    target = _target_dtypes(base, entries)
    attrs = list(
        dict.fromkeys(
            state_attributes(base.columns)
            + [c[len(FLAG) :] for e in entries for c in e.frame.columns if c.startswith(FLAG)]
        )
    )
    for a in attrs:
        target.setdefault(a, pl.Null())
    touched = [a for a in attrs if any(flag(a) in e.frame.columns for e in entries)]
    sent = pl.concat([_entry_rows(e, touched, target) for e in entries]).sort(_SEQ)
    latest = sent.group_by(ID, maintain_order=True).agg(
        [
            pl.col(a).filter(pl.col(flag(a)) & pl.col(f"{_KNOWN}{a}")).last().alias(a)
            for a in touched
        ]
        + [
            pl.col(f"{_KNOWN}{a}").filter(pl.col(flag(a))).last().alias(f"{_KNOWN}{a}")
            for a in touched
        ]
        + [(pl.col(flag(a)) & pl.col(f"{_KNOWN}{a}")).any().alias(f"__set_{a}") for a in touched]
    )
    # The base is sorted by id and large, the entries small: the users it already has are found
    # by binary search and their values written in place (only the columns entries touch are
    # copied); users new to it are merged in. No join or sort of the large table.
    if not base.get_column(ID).is_sorted():
        base = base.sort(ID)
    latest = latest.sort(ID)
    found, at = positions(base.get_column(ID), latest.get_column(ID))
    hit = latest.filter(found)
    fresh = latest.filter(~found)
    olds = [_old_value(base.schema, a, target[a]) for a in attrs]
    folded = base.select(
        pl.col(ID),
        *(old.alias(a) for a, (old, _) in zip(attrs, olds, strict=True)),
        *(mark.alias(uncertain(a)) for a, (_, mark) in zip(attrs, olds, strict=True)),
    )
    edits = {}
    for a in touched:
        # Per user, the last checkpoint that sent a value sets it; the last entry that sent the
        # attribute at all says whether Braze surely holds it (else it stays uncertain).
        was_set = hit.get_column(f"__set_{a}").fill_null(False)
        last_known = hit.get_column(f"{_KNOWN}{a}")
        told = last_known.is_not_null()
        edits[a] = (at.filter(was_set), hit.get_column(a).filter(was_set))
        doubts = ~last_known.filter(told)
        if doubts.any() or folded.get_column(uncertain(a)).any():  # else certain before and after
            edits[uncertain(a)] = (at.filter(told), doubts)
    folded = put_columns(folded, edits)
    # Users no version has had: nothing old to keep.
    new_rows = fresh.select(
        pl.col(ID),
        *(pl.col(a).alias(a) if a in touched else pl.lit(None, target[a]).alias(a) for a in attrs),
        *(
            (~pl.col(f"{_KNOWN}{a}")).fill_null(False).alias(uncertain(a))
            if a in touched
            else pl.lit(False).alias(uncertain(a))
            for a in attrs
        ),
    )
    # Uncertainty columns are kept only where some user has one (dropped before the merge).
    marks = [f.select(pl.col(uncertain(a)).any() for a in attrs).row(0) for f in (folded, new_rows)]
    folded = folded.drop(uncertain(a) for a, *m in zip(attrs, *marks, strict=True) if not any(m))
    if fresh.height:
        new_rows = new_rows.select(folded.columns).cast(dict(folded.schema))
        folded = folded.lazy().merge_sorted(new_rows.lazy(), key=ID).collect()
    return folded


def _old_value(schema: pl.Schema, a: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """An attribute's value in the base, in the folded type, and whether it is uncertain. When its
    type changed, old values of the other type are dropped and marked uncertain: Braze holds
    them, the state can't."""
    if a not in schema:
        return pl.lit(None, dtype), pl.lit(False)
    compatible = schema[a] == pl.Null or _class(schema[a]) == _class(dtype)
    old = pl.col(a).cast(dtype) if compatible else pl.lit(None, dtype)
    lost = pl.lit(False) if compatible else pl.col(a).is_not_null()
    mark = pl.col(uncertain(a)).cast(pl.Boolean) if uncertain(a) in schema else pl.lit(False)
    return old, (mark.fill_null(False) | lost).fill_null(False)


def _parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf, compression=COMPRESSION, statistics=False)
    return buf.getvalue()


class StateMovedError(RuntimeError):
    """The state was committed past this writer's journal entry while it wrote it."""


class SyncState:
    """The sync state of one destination (one Braze workspace and identifier kind)."""

    def __init__(self, storage: Storage, destination: str):
        self.storage = storage
        self.base = f"sync/{destination}"

    # -- names -------------------------------------------------------------------------------------
    def _version_dir(self, version: int) -> str:
        return f"{self.base}/state/v{version:06d}"

    def _entry_name(self, seq: int) -> str:
        return f"{self.base}/journal/e{seq:012d}.parquet"

    @staticmethod
    def entry_seq(name: str) -> int:
        return int(name.rsplit("/", 1)[-1][1:].split(".")[0])

    def versions(self) -> list[int]:
        out = []
        for name in self.storage.list(f"{self.base}/state"):
            parts = name.split("/")
            if parts[-1] == "manifest.json" and parts[-2].startswith("v"):
                out.append(int(parts[-2][1:]))
        return sorted(out)

    def journal(self) -> list[str]:
        """Every journal entry, in the order written."""
        names = [n for n in self.storage.list(f"{self.base}/journal") if n.endswith(".parquet")]
        return sorted(names, key=self.entry_seq)

    # -- reading -----------------------------------------------------------------------------------
    def manifest(self, version: int) -> dict:
        return orjson.loads(self.storage.read_bytes(f"{self._version_dir(version)}/manifest.json"))

    def _newest(self) -> tuple[int, dict]:
        versions = self.versions()
        return (versions[-1], self.manifest(versions[-1])) if versions else (0, {})

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
        data = _parquet_bytes(rows.with_columns(pl.lit(kind).alias(_KIND)))
        listed = [self.entry_seq(n) for n in self.journal()]
        seq = max([*listed, int(self._newest()[1].get("folded_through", 0))]) + 1
        for _ in range(1000):
            name = self._entry_name(seq)
            if self.storage.create_bytes(name, data):
                failpoint(f"journal.{kind}")
                break
            seq += 1
        else:  # pragma: no cover - a thousand writers at once
            raise RuntimeError(f"could not append to {self.base}/journal")
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
        if self.storage.create_bytes(
            f"{vdir}/manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
        ):
            return True
        self.storage.delete(f"{vdir}/{part}")
        return False

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
        versions = self.versions()
        if not versions:
            return 0, 0
        through = int(self.manifest(versions[-1]).get("folded_through", 0))
        old = versions[:-keep] if len(versions) > keep else []
        for v in old:
            names = self.storage.list(self._version_dir(v))
            for name in sorted(names, key=lambda n: n.endswith("manifest.json")):
                self.storage.delete(name)  # the manifest last: the version exists until then
        done = [n for n in self.journal() if self.entry_seq(n) <= through]
        for name in done:
            self.storage.delete(name)
        self.storage.remove_stale_temp_files(self.base)
        self.storage.remove_empty_folders(f"{self.base}/journal")
        self.storage.remove_empty_folders(f"{self.base}/state")
        return len(old), len(done)
