"""The emulator's behaviour without HTTP: the routes, their checks (auth, content type, size,
rate limits, injected faults) and the admin routes.

Its parts live beside it, each named for what it is: ``track`` (/users/track's object semantics:
which profile an object addresses, what it creates, what it bills), ``events`` (events,
purchases and eCommerce events: their checks and what they record), ``profiles`` (the store and
how values apply),
``validation`` (per-value checks with Braze's wording), ``limits`` (fixed-window rate limits and
their headers), ``faults`` (what to inject, and ``DROP``), ``settings`` (settings and counters),
``identity`` (/users/merge, /users/external_ids/rename). ``server.py`` only moves bytes.

Everything follows Braze's public documentation of /users/track
(https://www.braze.com/docs/api/endpoints/user_data/post_user_track) and /users/export/ids; where
it is silent, the choice is written next to the code.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import asdict
from typing import Any

import orjson

from amp_braze.braze import field_rules
from amp_braze.braze.emulator import identity, subscriptions
from amp_braze.braze.emulator.faults import (
    DROP,
    Dropped,
    Faults,
    Response,
    drops_after_apply,
    injected_before,
)
from amp_braze.braze.emulator.limits import (
    IDENTITY_RATE_LIMIT,
    FixedWindowLimiter,
    rate_limit_headers,
)
from amp_braze.braze.emulator.profiles import ProfileStore
from amp_braze.braze.emulator.settings import Settings, Stats
from amp_braze.braze.emulator.track import Track

_ROUTES = ("/users/track", "/users/export/ids", "/users/merge", "/users/external_ids/rename")


class Emulator:
    """Profiles and counters; thread-safe (one lock: the HTTP layer may call from several threads)."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.lock = threading.Lock()
        self.faults = Faults()
        self._blocklist: frozenset[str] = frozenset()
        self._bad_request: frozenset[str] = frozenset()
        self._rng = random.Random()
        self.reset()

    # -- state -------------------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.store = ProfileStore()
            self.stats = Stats()
            self.limiter = FixedWindowLimiter(self.settings.rate_limit, self.settings.rate_window)
            self.export_limiter = FixedWindowLimiter(
                self.settings.export_rate_limit, self.settings.export_rate_window
            )
            self.identity_limiter = FixedWindowLimiter(*IDENTITY_RATE_LIMIT)
            self.subscriptions = subscriptions.Subscriptions()

    def configure(self, **changes: Any) -> dict[str, Any]:
        with self.lock:
            for k, v in changes.items():
                if not hasattr(self.settings, k):
                    raise KeyError(k)
                setattr(self.settings, k, type(getattr(self.settings, k))(v))
            self.limiter = FixedWindowLimiter(self.settings.rate_limit, self.settings.rate_window)
            self.export_limiter = FixedWindowLimiter(
                self.settings.export_rate_limit, self.settings.export_rate_window
            )
            return self.public_settings()

    def public_settings(self) -> dict[str, Any]:
        s = asdict(self.settings)
        s.pop("api_key")
        return s

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        with self.lock:
            if changes.pop("clear", False):
                self.faults = Faults()
            seconds = changes.pop("force_429_seconds", None)
            if seconds is not None:
                self.faults.force_429_until = time.time() + float(seconds)
            for k, v in changes.items():
                if not hasattr(self.faults, k):
                    raise KeyError(k)
                setattr(self.faults, k, v)
            if "seed" in changes:
                self._rng.seed(self.faults.seed)
            self._blocklist = frozenset(self.faults.blocklisted_external_ids)
            self._bad_request = frozenset(self.faults.bad_request_external_ids)
            return asdict(self.faults)

    def users(self, offset: int = 0, limit: int | None = None) -> list[dict]:
        with self.lock:
            return self.store.users(offset, limit)

    def dump(self) -> bytes:
        return orjson.dumps(self.users())

    def load(self, data: bytes) -> None:
        with self.lock:
            self.store.load(orjson.loads(data))

    # -- request entry points ------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Response | Dropped:
        """Answer one HTTP request (headers lower-cased)."""
        target, path = path, path.split("?", 1)[0].rstrip("/") if path != "/" else path
        with self.lock:
            self.stats.requests += 1
        if path.startswith("/_emulator"):
            return self._admin(method, path, body)
        if path in subscriptions.ROUTES:
            return subscriptions.handle(self, method, target, headers, body)
        if path not in _ROUTES:
            return self._count(404, {}, {"message": "Not Found"})
        if method != "POST":
            return self._count(405, {}, {"message": "Method Not Allowed"})
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:].strip() != self.settings.api_key:
            return self._count(401, {}, {"message": "Invalid API key"})
        ctype = headers.get("content-type", "")
        if not ctype.lower().startswith("application/json"):
            return self._count(
                415,
                {},
                {"message": "Unsupported Media Type: Content-Type must be application/json"},
            )
        with self.lock:
            self.stats.bytes_received += len(body)
            fault = injected_before(self.faults, self._rng, self.stats)
            if isinstance(fault, tuple):
                self.stats.status[fault[0]] += 1
            if fault is not None:
                return fault
            limiter = {
                "/users/track": self.limiter,
                "/users/export/ids": self.export_limiter,
            }.get(path, self.identity_limiter)
            ok, remaining, reset_in = limiter.take(time.time())
            if not ok:
                self.stats.rate_limited += 1
                self.stats.status[429] += 1
                retry = {"X-Ratelimit-Retry-After": str(max(1, math.ceil(reset_in)))}
                return 429, retry, {"message": "API Rate Limit Exceeded"}
            rl_headers = rate_limit_headers(
                limiter, remaining, reset_in, self.settings.reset_header
            )
        if len(body) > field_rules.MAX_BODY_BYTES:
            return self._count(413, rl_headers, {"message": "Request Entity Too Large"})
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            return self._count(
                400, rl_headers, {"message": f"Error while parsing request body: {e}"}
            )
        if not isinstance(payload, dict):
            return self._count(400, rl_headers, {"message": "Error while parsing request body"})
        with self.lock:
            if path == "/users/track":
                track = Track(
                    self.store, self.stats, self.settings, self._blocklist, self._bad_request
                )
                status, out = track(payload)
                self.stats.track_requests += 1
            elif path == "/users/merge":
                status, out, n = identity.merge(self.store, payload)
                self.stats.identity_requests += 1
                self.stats.users_merged += n
            elif path == "/users/external_ids/rename":
                status, out, n = identity.rename(self.store, payload)
                self.stats.identity_requests += 1
                self.stats.users_renamed += n
            else:
                status, out = self.store.export_ids(payload)
                self.stats.export_requests += 1
            self.stats.status[status] += 1
            if drops_after_apply(self.faults, self._rng):
                self.stats.dropped += 1
                return DROP
        return status, rl_headers, out

    def _count(self, status: int, headers: dict[str, str], body: Any) -> Response:
        with self.lock:
            self.stats.status[status] += 1
        return status, headers, body

    # -- admin routes ----------------------------------------------------------------------------
    def _admin(self, method: str, path: str, body: bytes) -> Response:
        route = path[len("/_emulator") :].strip("/")
        try:
            args = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError as e:
            return 400, {}, {"message": f"invalid JSON: {e}"}
        try:
            if route == "users":  # a body {"offset": k, "limit": m} asks for one page
                return 200, {}, self.users(int(args.get("offset", 0)), args.get("limit"))
            if route == "stats":
                with self.lock:
                    return 200, {}, self.stats.to_json() | {"users": len(self.store)}
            if route == "reset" and method == "POST":
                self.reset()
                if args.get("faults", True):
                    self.set_faults(clear=True)
                return 200, {}, {"message": "reset"}
            if route == "faults":
                if method == "POST":
                    return 200, {}, self.set_faults(**args)
                return 200, {}, asdict(self.faults)
            if route == "config":
                if method == "POST":
                    return 200, {}, self.configure(**args)
                return 200, {}, self.public_settings()
        except (KeyError, TypeError, ValueError) as e:
            return 400, {}, {"message": f"unknown or bad setting: {e}"}
        return 404, {}, {"message": f"no emulator route {route!r}"}
