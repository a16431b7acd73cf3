"""Subscription groups in the emulator: ``POST /v2/subscription/status/set`` (what a sync sends)
and ``GET /subscription/status/get`` (what a test reads back), per Braze's documentation of the
two endpoints (https://www.braze.com/docs/api/endpoints/subscription_groups/post_update_user_subscription_group_status_v2/,
https://www.braze.com/docs/api/endpoints/subscription_groups/get_list_user_subscription_group_status/).

A profile holds its states as ``"subscription_groups": {"<group id>": "subscribed"}`` (what
``/_emulator/users`` shows). The endpoint has its own rate limit (5,000 requests a minute, shared
by v1 and v2 in Braze) and costs no data points. Where Braze is silent, the choice is written
next to the code. Called by ``core.Emulator``; takes its lock for the store.
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from amp_braze.braze import field_rules
from amp_braze.braze.emulator.faults import (
    DROP,
    Dropped,
    Response,
    drops_after_apply,
    injected_before,
)
from amp_braze.braze.emulator.limits import FixedWindowLimiter, rate_limit_headers
from amp_braze.braze.event_rules import (
    GROUP_STATES,
    MAX_SUBSCRIPTION_IDS,
    SUBSCRIPTION_GET,
    SUBSCRIPTION_SET,
)

Emulator = Any  # core.Emulator (not imported: core imports this module)

ROUTES = (SUBSCRIPTION_SET, SUBSCRIPTION_GET)
GROUPS = "subscription_groups"  # a profile's states: group id -> state
BOTH = "Either an email address or a phone number should be provided, but not both."
_ANSWERED = {"subscribed": "Subscribed", "unsubscribed": "Unsubscribed"}


class Subscriptions:
    """The endpoint's own fixed-window limiter, rebuilt when the settings change it."""

    def __init__(self) -> None:
        self._limiter: FixedWindowLimiter | None = None

    def limiter(self, limit: int, window: float) -> FixedWindowLimiter:
        lim = self._limiter
        if lim is None or (lim.limit, lim.window) != (limit, window):
            lim = self._limiter = FixedWindowLimiter(limit, window)
        return lim


def handle(
    emu: Emulator, method: str, target: str, headers: dict[str, str], body: bytes
) -> Response | Dropped:
    """Answer one request to a subscription route (``target`` with its query string)."""
    parts = urlsplit(target)
    path = parts.path.rstrip("/")
    want = "POST" if path == SUBSCRIPTION_SET else "GET"
    if method != want:
        return emu._count(405, {}, {"message": "Method Not Allowed"})
    auth = headers.get("authorization", "")
    if not auth.startswith("Bearer ") or auth[7:].strip() != emu.settings.api_key:
        return emu._count(401, {}, {"message": "Invalid API key"})
    if path == SUBSCRIPTION_GET:
        # Not rate limited here (Braze limits it with the other "shared" endpoints); for tests.
        with emu.lock:
            status, out = _status(emu, parse_qs(parts.query))
            emu.stats.status[status] += 1
        return status, {}, out
    if not headers.get("content-type", "").lower().startswith("application/json"):
        return emu._count(
            415, {}, {"message": "Unsupported Media Type: Content-Type must be application/json"}
        )
    with emu.lock:
        emu.stats.bytes_received += len(body)
        fault = injected_before(emu.faults, emu._rng, emu.stats)
        if isinstance(fault, tuple):
            emu.stats.status[fault[0]] += 1
        if fault is not None:
            return fault
        s = emu.settings
        limiter = emu.subscriptions.limiter(s.subscription_rate_limit, s.subscription_rate_window)
        ok, remaining, reset_in = limiter.take(time.time())
        if not ok:
            emu.stats.rate_limited += 1
            emu.stats.status[429] += 1
            retry = {"X-Ratelimit-Retry-After": str(max(1, math.ceil(reset_in)))}
            return 429, retry, {"message": "API Rate Limit Exceeded"}
        rl = rate_limit_headers(limiter, remaining, reset_in, s.reset_header)
    try:
        payload = orjson.loads(body)
    except ValueError as e:
        return emu._count(400, rl, {"message": f"Error while parsing request body: {e}"})
    with emu.lock:
        emu.stats.subscription_requests += 1
        status, out = _set(emu, payload)
        emu.stats.status[status] += 1
        if drops_after_apply(emu.faults, emu._rng):
            emu.stats.dropped += 1
            return DROP
    return status, rl, out


def _problem(group: Any, i: int) -> str | None:
    """What is wrong with one group object (Braze's wording where it documents one)."""
    at = f"subscription_groups[{i}]"
    if not isinstance(group, dict):
        return f"{at} must be an object"
    gid = group.get("subscription_group_id")
    if not isinstance(gid, str) or not gid.strip():
        return f"{at}: subscription_group_id is required"
    if group.get("subscription_state") not in GROUP_STATES:
        return f"{at}: subscription_state must be 'subscribed' or 'unsubscribed'"
    if group.get("emails") is not None and group.get("phones") is not None:
        return BOTH
    given = [k for k in ("external_ids", "emails", "phones") if group.get(k) is not None]
    if not given:
        return f"{at}: external_ids, emails or phones is required"
    for k in given:
        ids = group[k]
        if not isinstance(ids, list) or not all(isinstance(x, str) and x for x in ids):
            return f"The value provided for the {k} field is not a valid ID array."
        if len(ids) > MAX_SUBSCRIPTION_IDS:
            return f"{at}: {k} can hold at most {MAX_SUBSCRIPTION_IDS} values, got {len(ids)}"
    for phone in group.get("phones") or []:
        if not field_rules.E164_RE.match(phone):
            return f"{at}: phone number {phone!r} is not in E.164 format"
    return None


def _set(emu: Emulator, payload: Any) -> tuple[int, dict]:
    """Validate every group object first (one bad object refuses the request: Braze documents no
    partial answer for this endpoint), then apply them in order."""
    groups = payload.get(GROUPS) if isinstance(payload, dict) else None
    if not isinstance(groups, list) or not groups:
        return 400, {"message": "subscription_groups must be a non-empty array of objects"}
    for i, group in enumerate(groups):
        why = _problem(group, i)
        if why:
            return 400, {"message": why}
    for group in groups:
        gid, state = group["subscription_group_id"], group["subscription_state"]
        found = []
        for ext in group.get("external_ids") or []:
            p = emu.store.find("external_id", ext)
            if p is None:
                # Braze's documentation is silent on an external_id without a profile; the
                # emulator ignores it (creates nothing, stores nothing) and counts it.
                emu.stats.subscription_unknown_ids += 1
            else:
                found.append(p)
        for kind, key in (("email", "emails"), ("phone", "phones")):
            # Braze updates every profile with that email or phone and keeps the state of one
            # no profile has for 30 days; the emulator updates the profile it finds, if any.
            for value in group.get(key) or []:
                p = emu.store.find(kind, value)
                if p is None:
                    emu.stats.subscription_unknown_ids += 1
                else:
                    found.append(p)
        for p in found:
            p[GROUPS] = {**(p.get(GROUPS) or {}), gid: state}
            emu.store.save(p)
            emu.stats.subscription_updates += 1
    # Subscription state changes cost no data points: stats.data_points is left alone.
    return 201, {"message": "success"}


def _status(emu: Emulator, query: dict[str, list[str]]) -> tuple[int, dict]:
    gid = (query.get("subscription_group_id") or [""])[0]
    if not gid:
        return 400, {"message": "subscription_group_id is required"}
    out: dict[str, str] = {}
    for kind, key in (("external_id", "external_id"), ("email", "email"), ("phone", "phone")):
        for value in query.get(key) or []:
            p = emu.store.find(kind, value)
            state = (p.get(GROUPS) or {}).get(gid) if p is not None else None
            out[value] = _ANSWERED.get(state, "Unknown")
    if not out:
        return 400, {"message": "external_id, email or phone is required"}
    return 200, {"status": out, "message": "success"}
