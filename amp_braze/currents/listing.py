"""Listing Currents files on S3 without reading the whole history.

Keys sort by ``event_type=`` folder first, then by ``date=``; inside one event type the hours sort in
time order. So a listing finds the folders that hold ``date=`` folders (a short walk with a
delimiter, through any extra folders Braze may add), then lists each one starting after the oldest
hour it needs (``StartAfter``), page by page. What a tick costs grows with the number of event types
and the window, not with how long the history is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from amp_braze.currents.keys import CurrentsFile, hour_of, parse_key

MAX_WALK_DEPTH = 8


def _prefixes(client: Any, bucket: str, prefix: str) -> Iterator[str]:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for p in page.get("CommonPrefixes", []):
            yield p["Prefix"]


def _objects(
    client: Any, bucket: str, prefix: str, start_after: str | None = None
) -> Iterator[dict]:
    paginator = client.get_paginator("list_objects_v2")
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        kwargs["StartAfter"] = start_after
    for page in paginator.paginate(**kwargs):
        yield from page.get("Contents", [])


def date_parents(client: Any, bucket: str, prefix: str) -> tuple[list[str], list[str]]:
    """(folders whose children are ``date=YYYY-MM-DD-HH`` folders, leaf folders holding files).

    Walks down with a delimiter, through ``event_type=`` and any unknown folders, until it meets
    ``date=`` folders; inside a date parent the hours sort in time order, so a listing can start at
    the oldest hour it needs."""
    root = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    parents: list[str] = []
    leaves: list[str] = []
    frontier = [root]
    for _ in range(MAX_WALK_DEPTH):
        nxt = []
        for folder in frontier:
            subs = list(_prefixes(client, bucket, folder))
            if not subs:
                leaves.append(folder)
            elif any(sub[len(folder) :].startswith("date=") for sub in subs):
                parents.append(folder)
            else:
                nxt += subs
        frontier = nxt
        if not frontier:
            break
    return parents, sorted(set(leaves + frontier))


def _to_file(obj: dict) -> CurrentsFile | None:
    return parse_key(obj["Key"], obj.get("LastModified"), obj.get("Size", 0), obj.get("ETag", ""))


def _collect(client: Any, bucket: str, prefix: str, hour: str, exact: bool) -> list[CurrentsFile]:
    """Files of hour ``hour`` (exact) or of ``hour`` and later; inside an ``event_type=`` folder the
    listing starts at that hour instead of at the beginning of history."""
    typed, other = date_parents(client, bucket, prefix)
    keep = (lambda f: f.hour == hour) if exact else (lambda f: f.hour >= hour)
    files: list[CurrentsFile] = []
    for folder in typed:
        if exact:
            objs = _objects(client, bucket, f"{folder}date={hour}/")
        else:  # StartAfter is exclusive, and "date=H/..." sorts after "date=H": hour H is kept
            objs = _objects(client, bucket, folder, start_after=f"{folder}date={hour}")
        files += [f for f in map(_to_file, objs) if f is not None and keep(f)]
    for folder in other:  # layouts without date= folders (the 2017 export): list it all
        objs = (
            o for o in _objects(client, bucket, folder) if not o["Key"].startswith(tuple(typed))
        )
        files += [f for f in map(_to_file, objs) if f is not None and keep(f)]
    return sorted(files, key=lambda f: f.key)


def list_files(client: Any, bucket: str, prefix: str, since_hour: str) -> list[CurrentsFile]:
    """Every Currents file whose queue hour is ``since_hour`` or later."""
    return _collect(client, bucket, prefix, since_hour, exact=False)


def list_hour(client: Any, bucket: str, prefix: str, hour: str) -> list[CurrentsFile]:
    """Every file of one queue hour (what a partition run loads)."""
    return _collect(client, bucket, prefix, hour, exact=True)


def lookback_start(now: dt.datetime, hours: int) -> str:
    return hour_of(now - dt.timedelta(hours=hours))
