"""The emulator's behaviour without HTTP: the routes, /users/track's object semantics (which
profile an object addresses, what it creates, what it bills), and the admin routes.

Its parts live beside it, each named for what it is: ``profiles`` (the store and how values apply),
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
from amp_braze.braze.emulator import identity
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
from amp_braze.braze.emulator.profiles import Profile, ProfileStore, unchanged
from amp_braze.braze.emulator.settings import Settings, Stats
from amp_braze.braze.emulator.validation import SKIP, ObjectError, standard, validate

# Keys of an attributes object that are not attributes.
CONTROL_AND_ID_KEYS = field_rules.CONTROL_KEYS | frozenset(field_rules.PRIMARY_IDENTIFIERS)
FATAL_NO_VALID = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
NO_IDENTIFIER = "'external_id' or 'braze_id' or 'user_alias' is required"


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

    def users(self) -> list[dict]:
        with self.lock:
            return self.store.users()

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
        path = path.split("?", 1)[0].rstrip("/") if path != "/" else path
        with self.lock:
            self.stats.requests += 1
        if path.startswith("/_emulator"):
            return self._admin(method, path, body)
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
                status, out = self._track(payload)
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
            if route == "users":
                return 200, {}, self.users()
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

    # -- /users/track ----------------------------------------------------------------------------
    def _track(self, payload: dict) -> tuple[int, dict]:
        arrays = {k: payload.get(k) for k in ("attributes", "events", "purchases")}
        for k, v in arrays.items():
            if v is not None and not isinstance(v, list):
                return 400, {"message": f"'{k}' must be an array"}
        counts = {k: len(v or []) for k, v in arrays.items()}
        total = sum(counts.values())
        limit = field_rules.MAX_OBJECTS_PER_REQUEST
        if (self.settings.legacy_limits and max(counts.values()) > limit) or (
            not self.settings.legacy_limits and total > limit
        ):
            return 400, {
                "message": "Max Input Length Exceeded",
                "errors": [
                    f"Each request can contain up to {limit} "
                    + (
                        "objects per array"
                        if self.settings.legacy_limits
                        else "total objects combined"
                    )
                ],
            }
        if self._bad_request and any(
            isinstance(o, dict) and o.get("external_id") in self._bad_request
            for o in arrays["attributes"] or []
        ):
            return 400, {"message": "Bad Request (emulator fault: bad_request_external_ids)"}
        self.stats.objects += total
        errors: list[dict] = []
        processed = dict.fromkeys(arrays, 0)
        for kind, items in arrays.items():
            for i, obj in enumerate(items or []):
                try:
                    if not isinstance(obj, dict):
                        raise ObjectError(f"{kind} objects must be JSON objects")
                    if kind == "attributes":
                        self._apply_attributes(obj)
                    else:
                        self._apply_event(kind, obj)
                    processed[kind] += 1
                except ObjectError as e:
                    errors.append({"type": str(e), "input_array": kind, "index": i})
        self.stats.object_errors += len(errors)
        self.stats.attributes_processed += processed["attributes"]
        self.stats.events_processed += processed["events"]
        self.stats.purchases_processed += processed["purchases"]
        if total and not any(processed.values()):
            return 400, {"message": FATAL_NO_VALID, "errors": errors}
        out: dict[str, Any] = {"message": "success"}
        for kind in arrays:
            if arrays[kind] is not None:
                out[f"{kind}_processed"] = processed[kind]
        if errors:
            out["errors"] = errors
        return 201, out

    def _resolve(self, obj: dict) -> tuple[Profile | None, bool, str]:
        """Find the profile an object addresses: (profile or None, may_create, identifier kind)."""
        if obj.get("external_id") is not None and "braze_id" not in obj and "user_alias" not in obj:
            primaries = ["external_id"]  # the common case, without the generic scan
        else:
            primaries = [k for k in field_rules.PRIMARY_IDENTIFIERS if obj.get(k) is not None]
        if len(primaries) > 1:
            raise ObjectError(
                "Only one of 'external_id', 'braze_id' or 'user_alias' may be provided"
            )
        update_only = obj.get("_update_existing_only")
        if update_only is not None and not isinstance(update_only, bool):
            raise ObjectError("'_update_existing_only' must be a boolean")
        if primaries == ["external_id"]:
            ext = obj["external_id"]
            if not isinstance(ext, str) or not ext:
                raise ObjectError("'external_id' must be a non-empty string")
            if ext in self._blocklist:
                raise ObjectError("provided external_id is blacklisted and disallowed")
            if len(ext.encode()) > field_rules.MAX_EXTERNAL_ID_BYTES:
                raise ObjectError(
                    f"EXTERNAL_USER_ID_TOO_LARGE: external_id exceeds the maximum allowed length of "
                    f"{field_rules.MAX_EXTERNAL_ID_BYTES} bytes"
                )
            return self.store.find("external_id", ext), not (update_only or False), "external_id"
        if primaries == ["user_alias"]:
            alias = obj["user_alias"]
            if not (
                isinstance(alias, dict)
                and isinstance(alias.get("alias_name"), str)
                and isinstance(alias.get("alias_label"), str)
            ):
                raise ObjectError("'user_alias' must have string 'alias_name' and 'alias_label'")
            key = (alias["alias_name"], alias["alias_label"])
            may_create = (
                update_only is False
            )  # aliases default to update-only (Braze: _update_existing_only)
            return self.store.find("user_alias", key), may_create, "user_alias"
        if primaries == ["braze_id"]:
            return self.store.find("braze_id", str(obj["braze_id"])), False, "braze_id"
        # Secondary identifiers: email wins over phone; an unknown email creates an email-only user.
        if obj.get("email") is not None:
            return (
                self.store.find("email", obj["email"]),
                not (update_only or False),
                "email",
            )
        if obj.get("phone") is not None:
            return self.store.find("phone", str(obj["phone"])), not (update_only or False), "phone"
        raise ObjectError(NO_IDENTIFIER)

    def _apply_attributes(self, obj: dict) -> None:
        profile, may_create, how = self._resolve(obj)
        if profile is None and not may_create:
            if how == "braze_id":
                raise ObjectError("'braze_id' does not match any user")
            # Update-only objects for unknown users are dropped silently by Braze; we count nothing.
            return
        merge = obj.get("_merge_objects", False)
        std_values: list[tuple[str, Any]] = []
        custom: dict[str, Any] = {}
        structured: list[tuple[str, Any]] = []
        unset: list[str] = []
        points = 0
        skip = CONTROL_AND_ID_KEYS
        std = field_rules.STANDARD_FIELDS
        free = field_rules.NON_BILLABLE_FIELDS
        max_chars = field_rules.MAX_STRING_CHARS
        secondary = how if how in ("email", "phone") else None
        # Validate everything first (an invalid object is skipped whole), then apply.
        for name, value in obj.items():
            if name in skip or name == secondary:
                continue
            if name in std:
                if value is None:
                    std_values.append((name, None))
                else:
                    std_values.append((name, standard(name, value)))
                points += name not in free
                continue
            t = type(value)
            if t is str:  # the common cases first: plain custom scalars
                if len(value) > max_chars:
                    raise ObjectError(
                        f"Custom attribute '{name}' is longer than {max_chars} characters"
                    )
            elif t is int or t is bool:
                pass
            elif t is float:
                if not math.isfinite(value):
                    raise ObjectError(f"'{name}' is not a finite number")
            else:
                value = validate(name, value)
                if value is not None:
                    structured.append((name, value))
                    points += field_rules.attribute_data_points(name, value)
                    continue
                unset.append(name)
            if not name or name[0] == "$" or len(name) > max_chars:
                validate(name, value)  # raises with the reason
            custom[name] = value
        points += len(custom)  # a custom scalar (or its unsetting) is one data point
        if profile is None:
            profile = self._create(obj, how)
        else:
            self.stats.unchanged_data_points += unchanged(profile, std_values, custom, structured)
        for name, value in std_values:
            if value is None:
                profile.pop(name, None)
            elif value is not SKIP:
                profile[name] = value
        attrs = profile["custom_attributes"]
        attrs.update(custom)
        for name in unset:  # null unsets
            attrs.pop(name, None)
        for name, value in structured:
            self.store.set(profile, name, value, merge, self.settings.array_cap)
        self.store.save(profile)
        self.stats.data_points += points

    def _apply_event(self, kind: str, obj: dict) -> None:
        profile, may_create, how = self._resolve(obj)
        if kind == "events":
            if not isinstance(obj.get("name"), str):
                raise ObjectError("'name' is required for an event")
        else:
            for k in ("product_id", "currency", "price"):
                if obj.get(k) is None:
                    raise ObjectError(f"'{k}' is required for a purchase")
        if not isinstance(obj.get("time"), str):
            raise ObjectError("'time' is required")
        if profile is None:
            if not may_create:
                return
            profile = self._create(obj, how)
        props = obj.get("properties") or {}
        self.stats.data_points += 1 + (len(props) if isinstance(props, dict) else 0)
        counters = profile.setdefault("custom_events" if kind == "events" else "purchases", {})
        label = obj["name"] if kind == "events" else obj["product_id"]
        counters[label] = counters.get(label, 0) + 1
        self.store.save(profile)

    def _create(self, obj: dict, how: str) -> Profile:
        self.stats.users_created += 1
        return self.store.create(obj, how)
