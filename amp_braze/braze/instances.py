"""Braze instances and their REST endpoints (https://www.braze.com/docs/api/basics#endpoints)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

INSTANCES: dict[str, str] = {
    "US-01": "https://rest.iad-01.braze.com",
    "US-02": "https://rest.iad-02.braze.com",
    "US-03": "https://rest.iad-03.braze.com",
    "US-04": "https://rest.iad-04.braze.com",
    "US-05": "https://rest.iad-05.braze.com",
    "US-06": "https://rest.iad-06.braze.com",
    "US-07": "https://rest.iad-07.braze.com",
    "US-08": "https://rest.iad-08.braze.com",
    "US-10": "https://rest.us-10.braze.com",
    "EU-01": "https://rest.fra-01.braze.eu",
    "EU-02": "https://rest.fra-02.braze.eu",
    "AU-01": "https://rest.au-01.braze.com",
    "ID-01": "https://rest.id-01.braze.com",
    "JP-01": "https://rest.jp-01.braze.com",
    "KR-01": "https://rest.kr-01.braze.com",
}


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str) -> str | None:
    """Return why a REST endpoint is unacceptable, or None.

    Plain http would put the API key on the wire, so it is only allowed to a loopback host
    (the emulator)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"{url!r} is not an http(s) URL"
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        return f"{url!r} uses plain http; only https is allowed except for loopback hosts"
    if parsed.path not in ("", "/"):
        return f"{url!r} must be the REST endpoint's root (no path), e.g. https://rest.iad-03.braze.com"
    return None


def endpoint_for(instance: str | None, rest_endpoint: str | None) -> str:
    """The REST endpoint URL (no trailing slash) from an instance name or an explicit URL."""
    if rest_endpoint:
        problem = check_endpoint(rest_endpoint)
        if problem:
            raise ValueError(problem)
        return rest_endpoint.rstrip("/")
    if instance is None:
        raise ValueError("either an instance or a rest_endpoint is required")
    try:
        return INSTANCES[instance.upper()]
    except KeyError:
        raise ValueError(
            f"unknown Braze instance {instance!r}; known: {', '.join(INSTANCES)}"
        ) from None
