"""engagement_summary without rereading all history: the all-time half kept in a roll-up.

The roll-up (``currents/rollup/alltime-<id>.parquet``) holds, per user, the ids and the
``last_*_at`` times over every event up to a cut-off (the ``as_of`` of the run that wrote it). Its
manifest names the roll-up file (each write has a name of its own, so two summaries at once never
leave one's manifest over the other's table) and lists the loaded hours folded in, with the load
each came from: a new or reloaded hour is folded in, an hour that vanished makes the roll-up be
rebuilt. An hour that still holds events after the
cut-off (a device clock running ahead) is not listed, so the next run folds it again; folding takes
maxima, so that is harmless. The windowed counts read only the queue hours that can hold events of
the 90-day window.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import polars as pl

from amp_braze.currents.hours import current_hours
from amp_braze.currents.keys import hour_of
from amp_braze.currents.summary import (
    add_to_rollup,
    alltime,
    combine,
    window_start_hour,
    windowed,
)
from amp_braze.engagement_schema import empty_engagement_summary
from amp_braze.storage import Storage

ROLLUP_DIR = "currents/rollup"
MANIFEST = f"{ROLLUP_DIR}/manifest.json"
FILE = "__file"


@dataclass
class SummaryRun:
    table: pl.DataFrame
    hours_loaded: int = 0
    hours_read_for_windows: int = 0
    hours_folded: int = 0
    rollup: str = "none"  # incremental | rebuilt | unchanged | bypassed (as_of before the cut-off)
    events_read: int = 0


def _hour(name: str) -> str:
    return name.rsplit("hour=", 1)[1].split("/", 1)[0]


def update_summary(storage: Storage, events_dir: str, as_of: dt.datetime) -> SummaryRun:
    """The summary as of ``as_of``, updating the roll-up when ``as_of`` is not before its cut-off."""
    as_of = as_of.astimezone(dt.UTC)
    files = {h.events: h.load for h in current_hours(storage, events_dir).values()}
    if not files:
        return SummaryRun(empty_engagement_summary())
    run = SummaryRun(empty_engagement_summary(), hours_loaded=len(files))
    man = storage.read_json(MANIFEST)
    cutoff = dt.datetime.fromisoformat(man["cutoff"]) if man else None
    if cutoff is not None and as_of < cutoff:
        # An earlier as_of than the roll-up's: everything is read, and the roll-up is left as it is.
        run.rollup = "bypassed"
        every = storage.scan_parquet(sorted(files))
        users, n = pl.collect_all(
            [alltime(every.filter(pl.col("time") <= as_of)), every.select(pl.len())]
        )
        run.events_read = n.item()
    else:
        users = _update_rollup(storage, files, man, as_of, run)
    window = [n for n in sorted(files) if _hour(n) >= hour_of(window_start_hour(as_of))]
    run.hours_read_for_windows = len(window)
    source = storage.scan_parquet(window if window else sorted(files)[:1])
    if not window:
        source = source.clear()
    counts, n = pl.collect_all([windowed(source, as_of), source.select(pl.len())])
    if run.rollup != "bypassed":
        run.events_read += n.item()
    run.table = combine(counts, users)
    return run


def _update_rollup(
    storage: Storage, files: dict[str, str], man: dict | None, as_of: dt.datetime, run: SummaryRun
) -> pl.DataFrame:
    """``files``: each loaded hour's events table and the load it came from."""
    by_hour = {_hour(n): (n, load) for n, load in files.items()}
    folded: dict[str, str] = man["hours"] if man else {}
    current = man.get("file") if man else None
    if current is None or any(h not in by_hour for h in folded) or not storage.exists(current):
        base, todo, run.rollup = None, sorted(files), "rebuilt"
        folded = {}
    else:
        base = storage.read_parquet(current)
        todo = sorted(n for h, (n, load) in by_hour.items() if folded.get(h) != load)
        run.rollup = "incremental" if todo else "unchanged"
    run.hours_folded = len(todo)
    if not todo:
        return base
    scan = pl.scan_parquet(
        [storage.uri(n) for n in todo],
        storage_options=storage.storage_options,
        include_file_paths=FILE,
    )
    upto = scan.filter(pl.col("time") <= as_of)
    new, latest, n = pl.collect_all(
        [
            alltime(upto.drop(FILE)),
            scan.group_by(FILE).agg(pl.col("time").max().alias("latest")),
            scan.select(pl.len()),
        ]
    )
    run.events_read += n.item()
    rollup = add_to_rollup(base, new)
    # Hours holding events after the cut-off are not recorded, so the next run folds them again.
    ahead = latest.filter(pl.col("latest") > as_of).get_column(FILE).to_list()
    settled = {_hour(n): files[n] for n in todo if not any(p.endswith(n) for p in ahead)}
    name = f"{ROLLUP_DIR}/alltime-{uuid.uuid4().hex[:16]}.parquet"
    storage.write_parquet(name, rollup)
    storage.write_json(
        MANIFEST, {"file": name, "cutoff": as_of.isoformat(), "hours": folded | settled}
    )
    # Older roll-ups go, but the one just replaced stays for a summary still reading it.
    for old in storage.list(ROLLUP_DIR):
        if old.endswith(".parquet") and old not in (name, current):
            storage.delete(old)
    return rollup
