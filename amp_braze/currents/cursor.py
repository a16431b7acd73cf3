"""The Currents sensor's cursor: per queue hour in the lookback window, a fingerprint of its files.

A new file (even one sorting before keys already seen, or arriving late for an hour already loaded)
changes its hour's fingerprint, so the hour is requested again; the run reloads the whole hour, so a
reload never double-counts. Hours older than the window leave the cursor: its size is bounded by the
window (one short entry an hour), not by the history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from amp_braze.currents.keys import CurrentsFile

CURSOR_VERSION = 1


def fingerprint(files: list[CurrentsFile]) -> str:
    h = hashlib.sha1()
    for f in sorted(files, key=lambda f: f.key):
        h.update(f"{f.key}|{f.size}|{f.etag}\n".encode())
    return f"{len(files)}-{h.hexdigest()[:16]}"


@dataclass
class HourChange:
    hour: str
    fingerprint: str
    files: int
    new: bool  # the hour was not in the cursor (first files) rather than changed (late files)


def advance(
    files: list[CurrentsFile], cursor: str | None, since_hour: str
) -> tuple[list[HourChange], str]:
    """(hours whose file set changed, the next cursor) from a listing of hours >= since_hour."""
    seen: dict[str, str] = {}
    if cursor:
        try:
            data = orjson.loads(cursor)
            if data.get("v") == CURSOR_VERSION:
                seen = dict(data.get("hours", {}))
        except orjson.JSONDecodeError:
            seen = {}
    by_hour: dict[str, list[CurrentsFile]] = {}
    for f in files:
        by_hour.setdefault(f.hour, []).append(f)
    changes = []
    hours: dict[str, str] = {}
    for hour in sorted(by_hour):
        fp = fingerprint(by_hour[hour])
        hours[hour] = fp
        if seen.get(hour) != fp:
            changes.append(HourChange(hour, fp, len(by_hour[hour]), hour not in seen))
    # Keep hours still in the window that this listing did not see (none should vanish, but a
    # listing error must not make us forget and reload them).
    for hour, fp in seen.items():
        if hour >= since_hour and hour not in hours:
            hours[hour] = fp
    waiting = {h: v for h, v in (waiting_hours(cursor)).items() if h in hours}
    return changes, orjson.dumps(
        {"v": CURSOR_VERSION, "hours": dict(sorted(hours.items())), "waiting": waiting}
    ).decode()


def waiting_hours(cursor: str | None) -> dict[str, list]:
    """Requested hours not yet confirmed loaded: hour -> [fingerprint, retries so far]."""
    if not cursor:
        return {}
    try:
        data = orjson.loads(cursor)
    except orjson.JSONDecodeError:
        return {}
    return dict(data.get("waiting", {})) if data.get("v") == CURSOR_VERSION else {}


MAX_RETRIES = 5


@dataclass
class Retry:
    hour: str
    fingerprint: str
    attempt: int


def retry_hours(
    cursor: str,
    requested: set[str],
    loaded: Callable[[str], str | None],
    failed: Callable[[str], bool],
) -> tuple[list[Retry], str]:
    """Hours to request again, and the next cursor. The cursor remembers which requested hours
    are not yet confirmed loaded (the fingerprint the load recorded); one whose newest load run
    failed (after Dagster's own retries) is requested again, at most ``MAX_RETRIES`` times for the
    same files. ``requested``: hours this tick asks for anyway."""
    data = orjson.loads(cursor)
    hours: dict[str, str] = data["hours"]
    waiting: dict[str, list] = {
        h: v for h, v in data.get("waiting", {}).items() if h in hours and h not in requested
    }
    for h in requested:
        waiting[h] = [hours[h], 0]
    out = []
    for hour, (fp, attempt) in sorted(waiting.items()):
        if hour in requested:
            continue
        if hours[hour] != fp:
            waiting[hour] = [hours[hour], 0]
            fp, attempt = hours[hour], 0
        if loaded(hour) == fp:
            del waiting[hour]
        elif attempt < MAX_RETRIES and failed(hour):
            waiting[hour] = [fp, attempt + 1]
            out.append(Retry(hour, fp, attempt + 1))
    data["waiting"] = dict(sorted(waiting.items()))
    return out, orjson.dumps(data).decode()
