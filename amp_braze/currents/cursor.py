"""The Currents sensor's cursor: per queue hour in the lookback window, a fingerprint of its files.

A new file (even one sorting before keys already seen, or arriving late for an hour already loaded)
changes its hour's fingerprint, so the hour is requested again; the run reloads the whole hour, so a
reload never double-counts. Hours older than the window leave the cursor: its size is bounded by the
window (about 40 bytes an hour), not by the history.
"""

from __future__ import annotations

import hashlib
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
    return changes, orjson.dumps(
        {"v": CURSOR_VERSION, "hours": dict(sorted(hours.items()))}
    ).decode()
