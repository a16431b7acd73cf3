"""Where loaded Currents hours live, so that an hour is always exactly one load's files.

Each load of a queue hour writes a folder of its own and marks it complete last::

    currents/events/hour=2026-11-29-13/load=20261129T140512-3f9a.../type=users.messages.email.Send.parquet
                                                                 .../_events.parquet
                                                                 .../_quarantine.json
                                                                 .../_SUCCESS.json   (written last)

Readers take, per hour, the newest complete load. Two loads of one hour at once (the sensor asked
twice, or a person reloads it while a tick does) each write their own folder, so no reader ever
sees a mix; the older complete loads are deleted, keeping one more for a reader still using it.
Files written directly under ``hour=<h>/`` by earlier versions count as the oldest load.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import orjson
import polars as pl

from amp_braze.storage import Storage

EVENTS_DIR = "currents/events"
DONE = "_SUCCESS.json"
EVENTS = "_events.parquet"
QUARANTINE = "_quarantine.json"
STALE_SECONDS = 3600  # an incomplete load older than this was killed: its files are removed


@dataclass(frozen=True)
class HourFiles:
    hour: str
    load: str  # the load's id; sorts by time
    names: tuple[str, ...]  # every file of the load (storage names)

    @property
    def folder(self) -> str:
        return load_dir(self.hour, self.load)

    @property
    def events(self) -> str:
        return f"{self.folder}/{EVENTS}"

    def type_files(self) -> dict[str, str]:
        """Per event type, its table."""
        out = {}
        for n in self.names:
            base = n.rsplit("/", 1)[-1]
            if base.startswith("type=") and base.endswith(".parquet"):
                out[base[len("type=") : -len(".parquet")]] = n
        return out


def hour_dir(hour: str) -> str:
    return f"{EVENTS_DIR}/hour={hour}"


def load_dir(hour: str, load: str) -> str:
    return f"{hour_dir(hour)}/load={load}"


def new_load_id() -> str:
    """Sorts by the time the load started (to the nanosecond): a later load read a later listing."""
    ns = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ns // 1_000_000_000))
    return f"{stamp}.{ns % 1_000_000_000:09d}-{uuid.uuid4().hex[:8]}"


def _parse(name: str) -> tuple[str, str] | None:
    """(hour, load) of a file name under EVENTS_DIR."""
    rest = name[len(EVENTS_DIR) + 1 :] if name.startswith(EVENTS_DIR + "/") else ""
    parts = rest.split("/")
    if not parts[0].startswith("hour="):
        return None
    hour = parts[0][len("hour=") :]
    if len(parts) == 3 and parts[1].startswith("load="):
        return hour, parts[1][len("load=") :]
    return None


def _loads(names: list[str]) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for n in names:
        parsed = _parse(n)
        if parsed:
            out.setdefault(parsed[0], {}).setdefault(parsed[1], []).append(n)
    return out


def _complete(names: list[str]) -> bool:
    return any(n.endswith("/" + DONE) for n in names)


def current_hours(storage: Storage, prefix: str = EVENTS_DIR) -> dict[str, HourFiles]:
    """Per loaded hour, its newest complete load (one listing of the events folder)."""
    out = {}
    for hour, loads in _loads(storage.list(prefix)).items():
        done = sorted(ld for ld, names in loads.items() if _complete(names))
        if done:
            out[hour] = HourFiles(hour, done[-1], tuple(sorted(loads[done[-1]])))
    return out


def current_hour(storage: Storage, hour: str) -> HourFiles | None:
    return current_hours(storage, hour_dir(hour)).get(hour)


def loaded_fingerprint(storage: Storage, hour: str) -> str | None:
    """The fingerprint of the Currents files the hour's current load read, if it recorded one."""
    cur = current_hour(storage, hour)
    if cur is None:
        return None
    done = storage.read_json(f"{cur.folder}/{DONE}", {})
    return done.get("fingerprint")


def publish(storage: Storage, hour: str, load: str, summary: dict) -> None:
    """Mark a load complete (its files are all written), then remove older loads of the hour:
    every complete one but the newest before this, and incomplete ones left by killed loads."""
    storage.write_bytes(f"{load_dir(hour, load)}/{DONE}", orjson.dumps(summary))
    loads = _loads(storage.list(hour_dir(hour))).get(hour, {})
    done = sorted(ld for ld, names in loads.items() if _complete(names))
    keep = set(done[-2:]) | {load}
    cutoff = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - STALE_SECONDS))
    # A load's id starts with when it started, so "older than the cut-off" is a string compare.
    for ld, names in loads.items():
        if ld in keep:
            continue
        if ld in done and ld < load or ld not in done and ld < cutoff:
            for n in names:
                storage.delete(n)
    storage.remove_empty_folders(hour_dir(hour))


def write_load(
    storage: Storage,
    hour: str,
    events: pl.DataFrame,
    by_type: dict[str, pl.DataFrame] | None = None,
    quarantined: list[dict] | None = None,
    fingerprint: str | None = None,
) -> HourFiles:
    """Write one load of an hour into a folder of its own, then publish it."""
    load = new_load_id()
    folder = load_dir(hour, load)
    for event_type, df in (by_type or {}).items():
        storage.write_parquet(f"{folder}/type={event_type}.parquet", df)
    storage.write_parquet(f"{folder}/{EVENTS}", events)
    storage.write_json(f"{folder}/{QUARANTINE}", quarantined or [])
    publish(
        storage,
        hour,
        load,
        {"fingerprint": fingerprint, "events": events.height, "types": len(by_type or {})},
    )
    cur = current_hour(storage, hour)
    assert cur is not None
    return cur
