"""Braze Currents S3 keys: what a key says about its event type and queue hour.

Braze's layouts (https://www.braze.com/docs/partners/data_and_analytics/cloud_storage/amazon_s3/), matched on ``event_type=`` and ``date=`` segments wherever
they appear, never on a fixed depth (Braze warns the naming may change):

- newest: ``<prefix>/dataexport.<cluster>.S3.integration.<id>/event_type=T/date=YYYY-MM-DD-HH/version=V/<env>/<file>.avro``
- older:  ``<prefix>/dataexport.<cluster>.S3.integration.<id>/event_type=T/date=YYYY-MM-DD-HH/<schema-id>/<zone>/<file>.avro``
- any extra or unknown folders around those segments.

A key with no ``event_type=`` (the 2017 export) gets its event type from the Avro schema when it is
loaded; a key with no ``date=`` gets its hour from the object's LastModified time.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

EVENT_TYPE_RE = re.compile(r"(?:^|/)event_type=([^/]+)/")
DATE_RE = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2}-\d{2})(?:/|$)")
HOUR_FORMAT = "%Y-%m-%d-%H"
SCHEMA_PREFIX_RE = re.compile(r"^dataexport\.[^.]+\.inner\.")


@dataclass(frozen=True)
class CurrentsFile:
    key: str
    event_type: str | None  # None: take it from the Avro schema
    hour: str  # YYYY-MM-DD-HH, UTC queue hour
    size: int = 0
    etag: str = ""


def hour_of(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime(HOUR_FORMAT)


def parse_hour(hour: str) -> dt.datetime:
    return dt.datetime.strptime(hour, HOUR_FORMAT).replace(tzinfo=dt.UTC)


def parse_key(
    key: str, last_modified: dt.datetime | None = None, size: int = 0, etag: str = ""
) -> CurrentsFile | None:
    """The file a key names, or None when it is not a Currents Avro file."""
    if not key.endswith(".avro"):
        return None
    et = EVENT_TYPE_RE.search(key)
    date = DATE_RE.search(key)
    if date:
        hour = date.group(1)
        try:
            parse_hour(hour)
        except ValueError:
            return None
    elif last_modified is not None:
        hour = hour_of(last_modified)
    else:
        return None
    return CurrentsFile(key, et.group(1) if et else None, hour, size, etag.strip('"'))


def event_type_from_schema(name: str | None) -> str:
    """``dataexport.S3.inner.users.messages.email.Send`` -> ``users.messages.email.Send``."""
    if not name:
        return "unknown"
    return SCHEMA_PREFIX_RE.sub("", name)
