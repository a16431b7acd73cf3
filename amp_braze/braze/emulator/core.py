"""The emulator's behaviour without HTTP: profiles, /users/track and /users/export/ids semantics,
rate limiting, data-point counting and faults. The HTTP layer (``server.py``) only moves bytes.

Everything here follows Braze's documentation of /users/track (https://www.braze.com/docs/api/endpoints/user_data/post_user_track)
and /users/export/ids; where Braze's documentation is silent the
choice is written next to the code.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from amp_braze.braze import field_rules
from amp_braze.braze.emulator import identity

Response = tuple[
    int, dict[str, str], Any
]  # status, extra headers, JSON body (None = drop the connection)

FATAL_NO_VALID = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
NO_IDENTIFIER = "'external_id' or 'braze_id' or 'user_alias' is required"


@dataclass
class Faults:
    """Failures to inject, set at run time through /_emulator/faults."""

    latency_ms: float = 0.0  # added to every /users/* response
    error_rate: float = 0.0  # share of requests answered 500/502/503 (not applied)
    drop_rate: float = 0.0  # share of connections closed before the request is applied
    drop_after_apply_rate: float = 0.0  # share applied, then the connection closed with no answer
    force_429_until: float = 0.0  # epoch seconds; every /users/* request is 429 until then
    blocklisted_external_ids: list[str] = field(
        default_factory=list
    )  # objects for these are rejected
    bad_request_external_ids: list[str] = field(
        default_factory=list
    )  # a request holding one is a 400
    seed: int | None = None


@dataclass
class Settings:
    api_key: str = "emulator-key"
    rate_limit: int = field_rules.DEFAULT_RATE_LIMIT
    rate_window: float = field_rules.DEFAULT_RATE_WINDOW_SECONDS
    export_rate_limit: int = field_rules.EXPORT_RATE_LIMIT
    export_rate_window: float = field_rules.EXPORT_RATE_WINDOW_SECONDS
    legacy_limits: bool = False  # 75 per array instead of 75 combined
    array_cap: int = field_rules.DEFAULT_ARRAY_CAP
    reset_header: str = "seconds"  # X-RateLimit-Reset as "seconds" remaining or "epoch"


class FixedWindowLimiter:
    """Braze-style fixed windows aligned to multiples of the window length."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.current_window = -1
        self.used = 0

    def take(self, now: float) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds until the window resets)."""
        w = int(now // self.window)
        if w != self.current_window:
            self.current_window, self.used = w, 0
        reset_in = (w + 1) * self.window - now
        if self.used >= self.limit:
            return False, 0, reset_in
        self.used += 1
        return True, self.limit - self.used, reset_in


@dataclass
class Stats:
    requests: int = 0
    track_requests: int = 0
    export_requests: int = 0
    objects: int = 0
    attributes_processed: int = 0
    events_processed: int = 0
    purchases_processed: int = 0
    data_points: int = 0
    # Data points spent on values the profile already held (set to what it was, or unset when
    # absent): what a sync that sends only changes should keep near zero.
    unchanged_data_points: int = 0
    rate_limited: int = 0
    object_errors: int = 0
    injected_5xx: int = 0
    dropped: int = 0
    users_created: int = 0
    identity_requests: int = 0  # /users/merge and /users/external_ids/rename
    users_merged: int = 0
    users_renamed: int = 0
    bytes_received: int = 0
    status: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = {str(k): v for k, v in sorted(self.status.items(), key=lambda kv: str(kv[0]))}
        return d


_ROUTES = ("/users/track", "/users/export/ids", "/users/merge", "/users/external_ids/rename")
# Braze documents 1,000 requests a minute for /users/external_ids/rename; merges share it here.
IDENTITY_RATE_LIMIT = (1000, 60.0)


class ObjectError(Exception):
    pass


class Emulator:
    """Profiles and counters; thread-safe (one lock: the HTTP layer may call from several threads)."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.lock = threading.Lock()
        self.faults = Faults()
        self._id_prefix = uuid.uuid4().hex[:12]
        self._created = 0
        self._stamp_second, self._stamp = -1, ""
        self._blocklist: frozenset[str] = frozenset()
        self._bad_request: frozenset[str] = frozenset()
        self._rng = random.Random()
        self.reset()

    # -- state -------------------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.by_external_id: dict[str, dict] = {}
            self.by_braze_id: dict[str, dict] = {}
            self.by_alias: dict[tuple[str, str], dict] = {}
            self.by_email: dict[str, dict] = {}
            self.by_phone: dict[str, dict] = {}
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
            seen: dict[int, dict] = {}
            for index in (self.by_external_id, self.by_braze_id):
                for p in index.values():
                    seen.setdefault(id(p), p)
            return [_export(p) for p in seen.values()]

    def dump(self) -> bytes:
        return orjson.dumps(self.users())

    def load(self, data: bytes) -> None:
        with self.lock:
            for user in orjson.loads(data):
                p = dict(user)
                p["custom_attributes"] = dict(user.get("custom_attributes") or {})
                p["user_aliases"] = list(user.get("user_aliases") or [])
                self._index(p)

    # -- request entry points ------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
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
            fault = self._fault()
            if fault is not None:
                if fault[0]:
                    self.stats.status[fault[0]] += 1
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
            rl_headers = {
                "X-RateLimit-Limit": str(limiter.limit),
                "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(
                    math.ceil(time.time() + reset_in)
                    if self.settings.reset_header == "epoch"
                    else max(1, math.ceil(reset_in))
                ),
            }
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
                status, out, n = identity.merge(self, payload, self._index)
                self.stats.identity_requests += 1
                self.stats.users_merged += n
            elif path == "/users/external_ids/rename":
                status, out, n = identity.rename(self, payload, self._index)
                self.stats.identity_requests += 1
                self.stats.users_renamed += n
            else:
                status, out = self._export(payload)
                self.stats.export_requests += 1
            self.stats.status[status] += 1
            if self._after_apply_drop():
                self.stats.dropped += 1
                return 0, {}, None
        return status, rl_headers, out

    def _count(self, status: int, headers: dict[str, str], body: Any) -> Response:
        with self.lock:
            self.stats.status[status] += 1
        return status, headers, body

    # -- faults ----------------------------------------------------------------------------------
    def _fault(self) -> Response | None:
        f, now = self.faults, time.time()
        if f.force_429_until > now:
            self.stats.rate_limited += 1
            retry = max(1, math.ceil(f.force_429_until - now))
            return (
                429,
                {"X-Ratelimit-Retry-After": str(retry)},
                {"message": "API Rate Limit Exceeded"},
            )
        if f.drop_rate and self._rng.random() < f.drop_rate:
            self.stats.dropped += 1
            return 0, {}, None
        if f.error_rate and self._rng.random() < f.error_rate:
            self.stats.injected_5xx += 1
            status = self._rng.choice((500, 502, 503))
            return status, {}, {"message": "Internal Server Error (emulator fault)"}
        return None

    def _after_apply_drop(self) -> bool:
        rate = self.faults.drop_after_apply_rate
        return bool(rate) and self._rng.random() < rate

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
                    return 200, {}, self.stats.to_json() | {"users": len(self.by_braze_id)}
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

    def _resolve(self, obj: dict) -> tuple[dict | None, bool, str]:
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
            return self.by_external_id.get(ext), not (update_only or False), "external_id"
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
            return self.by_alias.get(key), may_create, "user_alias"
        if primaries == ["braze_id"]:
            return self.by_braze_id.get(str(obj["braze_id"])), False, "braze_id"
        # Secondary identifiers: email wins over phone; an unknown email creates an email-only user.
        if obj.get("email") is not None:
            return self.by_email.get(str(obj["email"]).lower()), not (update_only or False), "email"
        if obj.get("phone") is not None:
            return self.by_phone.get(str(obj["phone"])), not (update_only or False), "phone"
        raise ObjectError(NO_IDENTIFIER)

    def _apply_attributes(self, obj: dict) -> None:
        profile, may_create, how = self._resolve(obj)
        if profile is None and not may_create:
            if how == "braze_id":
                raise ObjectError("'braze_id' does not match any user")
            # Update-only objects for unknown users are dropped silently by Braze; we count nothing.
            return
        merge = obj.get("_merge_objects", False)
        standard: list[tuple[str, Any]] = []
        custom: dict[str, Any] = {}
        structured: list[tuple[str, Any]] = []
        unset: list[str] = []
        points = 0
        skip = _SKIP_KEYS
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
                    standard.append((name, None))
                else:
                    standard.append((name, self._standard(name, value)))
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
                value = self._validate(name, value)
                if value is not None:
                    structured.append((name, value))
                    points += field_rules.attribute_data_points(name, value)
                    continue
                unset.append(name)
            if not name or name[0] == "$" or len(name) > max_chars:
                self._validate(name, value)  # raises with the reason
            custom[name] = value
        points += len(custom)  # a custom scalar (or its unsetting) is one data point
        if profile is None:
            profile = self._create(obj, how)
        else:
            self.stats.unchanged_data_points += _unchanged(profile, standard, custom, structured)
        for name, value in standard:
            if name in ("email", "phone") or value is None or value is _SKIP:
                self._set(profile, name, value, merge)
            else:
                profile[name] = value
        attrs = profile["custom_attributes"]
        attrs.update(custom)
        for name in unset:  # null unsets
            attrs.pop(name, None)
        for name, value in structured:
            self._set(profile, name, value, merge)
        self.stats.data_points += points

    def _create(self, obj: dict, how: str) -> dict:
        self._created += 1
        now = int(time.time())
        if now != self._stamp_second:  # one strftime a second, not one a user
            self._stamp_second = now
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
        profile: dict[str, Any] = {
            "braze_id": f"{self._id_prefix}{self._created:012x}",  # 24 hex characters, unique
            "created_at": self._stamp,
            "user_aliases": [],
            "custom_attributes": {},
        }
        if how == "external_id":
            profile["external_id"] = obj["external_id"]
        elif how == "user_alias":
            profile["user_aliases"] = [dict(obj["user_alias"])]
        elif how in ("email", "phone"):
            profile[how] = obj[how]
        self.stats.users_created += 1
        self._index(profile)
        return profile

    def _index(self, p: dict) -> None:
        if p.get("external_id"):
            self.by_external_id[p["external_id"]] = p
        self.by_braze_id[p["braze_id"]] = p
        for a in p.get("user_aliases") or []:
            self.by_alias[(a["alias_name"], a["alias_label"])] = p
        if p.get("email"):
            self.by_email[str(p["email"]).lower()] = p
        if p.get("phone"):
            self.by_phone[str(p["phone"])] = p

    def _validate(self, name: str, value: Any) -> Any:
        """Check one attribute as Braze does; returns the value to store (may be normalised)."""
        if not isinstance(name, str) or not name or len(name) > field_rules.MAX_STRING_CHARS:
            raise ObjectError(f"invalid attribute name {name!r}")
        if name.startswith("$"):
            raise ObjectError(f"attribute name {name!r} may not start with $")
        if value is None:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            raise ObjectError(f"'{name}' is not a finite number")
        if name in field_rules.STANDARD_FIELDS:
            return self._standard(name, value)
        return self._custom(name, value)

    def _standard(self, name: str, value: Any) -> Any:
        if (
            name in _PLAIN_STRING_FIELDS
            and type(value) is str
            and len(value) <= field_rules.MAX_STRING_CHARS
        ):
            return value
        if name == "email":
            if not isinstance(value, str) or not field_rules.is_email(value):
                raise ObjectError("The value provided for the 'email' field is not a valid email.")
            return value
        if name == "dob":
            if not isinstance(value, str) or not field_rules.is_dob(value):
                raise ObjectError(
                    "The value provided for the 'dob' field must be in the format YYYY-MM-DD."
                )
            return value
        if name == "gender":
            if value not in field_rules.GENDERS:
                raise ObjectError(
                    "The value provided for the 'gender' field must be one of M, F, O, N, P."
                )
            return value
        if name == "email_subscribe":
            if value not in field_rules.SUBSCRIPTION_STATES:
                raise ObjectError(
                    "BAD_EMAIL_SUBSCRIPTION_STATE: must be subscribed, unsubscribed, opted_in"
                )
            return value
        if name == "push_subscribe":
            if value not in field_rules.SUBSCRIPTION_STATES:
                raise ObjectError(
                    "BAD_PUSH_SUBSCRIPTION_STATE: must be subscribed, unsubscribed, opted_in"
                )
            return value
        if name == "country":
            # Best-effort mapping; anything else is stored as NULL, as Braze does.
            return field_rules.country_code(value) if isinstance(value, str) else None
        if name == "language":
            return (
                value if isinstance(value, str) and value in field_rules.language_codes() else None
            )
        if name == "time_zone":
            return value if isinstance(value, str) and value in field_rules.time_zones() else _SKIP
        if name in ("first_name", "last_name", "home_city", "phone"):
            if not isinstance(value, str):
                raise ObjectError(f"The value provided for the '{name}' field must be a string.")
            if len(value) > field_rules.MAX_STRING_CHARS:
                raise ObjectError(
                    f"'{name}' is longer than {field_rules.MAX_STRING_CHARS} characters"
                )
            return value
        if name in ("braze_id", "alias_name", "alias_label", "external_id"):
            raise ObjectError(f"'{name}' cannot be set this way")
        return value

    def _custom(self, name: str, value: Any) -> Any:
        if isinstance(value, bool) or field_rules.is_number(value):
            return value
        if isinstance(value, str):
            if len(value) > field_rules.MAX_STRING_CHARS:
                raise ObjectError(
                    f"Custom attribute '{name}' is longer than {field_rules.MAX_STRING_CHARS} characters"
                )
            return value
        if isinstance(value, list):
            if any(isinstance(v, dict) for v in value):
                if len(orjson.dumps(value)) > field_rules.MAX_ARRAY_OF_OBJECTS_BYTES:
                    raise ObjectError(f"array of objects '{name}' is larger than 100 KB")
                return value
            for v in value:
                if isinstance(v, str) and len(v) > field_rules.MAX_STRING_CHARS:
                    raise ObjectError(
                        f"an element of '{name}' is longer than {field_rules.MAX_STRING_CHARS} characters"
                    )
                if isinstance(v, list):
                    raise ObjectError(f"'{name}' may not hold nested arrays")
            return value
        if isinstance(value, dict):
            keys = set(value)
            if keys == {"inc"}:
                if not isinstance(value["inc"], int) or isinstance(value["inc"], bool):
                    raise ObjectError(f"'{name}': inc must be an integer")
                return value
            if keys and keys <= {"add", "remove"}:
                for k in keys:
                    if not isinstance(value[k], list):
                        raise ObjectError(f"'{name}': {k} must be an array")
                return value
            if keys & {"$add", "$remove", "$update"}:
                return value
            _check_nested(name, value)
            return value
        raise ObjectError(f"unsupported value for custom attribute '{name}'")

    def _set(self, profile: dict, name: str, value: Any, merge: bool) -> None:
        if value is _SKIP:
            return
        if name in field_rules.STANDARD_FIELDS:
            if name == "email" and profile.get("email"):
                self.by_email.pop(str(profile["email"]).lower(), None)
            if name == "phone" and profile.get("phone"):
                self.by_phone.pop(str(profile["phone"]), None)
            if value is None:
                profile.pop(name, None)
            else:
                profile[name] = value
                if name == "email":
                    self.by_email[value.lower()] = profile
                if name == "phone":
                    self.by_phone[value] = profile
            return
        attrs = profile["custom_attributes"]
        if value is None:
            attrs.pop(name, None)
            return
        if isinstance(value, dict):
            keys = set(value)
            if keys == {"inc"}:
                current = attrs.get(name)
                attrs[name] = (current if field_rules.is_number(current) else 0) + value["inc"]
                return
            if keys <= {"add", "remove"}:
                arr = [v for v in attrs.get(name, []) if isinstance(attrs.get(name), list)]
                removed = value.get("remove") or []
                arr = [v for v in arr if v not in removed]
                for v in value.get("add") or []:
                    if v in arr:
                        arr.remove(v)  # a re-added element moves to the end
                    arr.append(v)
                attrs[name] = arr[-self.settings.array_cap :]
                return
            if keys & {"$add", "$remove", "$update"}:
                attrs[name] = _array_of_objects(attrs.get(name), value)
                return
            if merge and isinstance(attrs.get(name), dict):
                attrs[name] = _deep_merge(attrs[name], value)
            else:
                attrs[name] = value
            return
        if isinstance(value, list) and not any(isinstance(v, dict) for v in value):
            deduped: list = []
            for v in value:
                if v in deduped:
                    deduped.remove(v)
                deduped.append(v)
            attrs[name] = deduped[-self.settings.array_cap :]
            return
        attrs[name] = value

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

    # -- /users/export/ids -----------------------------------------------------------------------
    def _export(self, payload: dict) -> tuple[int, dict]:
        ids = payload.get("external_ids") or []
        aliases = payload.get("user_aliases") or []
        if not isinstance(ids, list) or not isinstance(aliases, list):
            return 400, {"message": "'external_ids' and 'user_aliases' must be arrays"}
        if len(ids) + len(aliases) > field_rules.MAX_EXPORT_IDS:
            return 400, {
                "message": f"at most {field_rules.MAX_EXPORT_IDS} external_ids and user_aliases per request"
            }
        fields = payload.get("fields_to_export")
        found: list[dict] = []
        invalid: list[str] = []
        for ext in ids:
            p = self.by_external_id.get(ext)
            if p is None:
                invalid.append(ext)
            else:
                found.append(p)
        for a in aliases:
            p = self.by_alias.get((a.get("alias_name"), a.get("alias_label")))
            if p is not None:
                found.append(p)
        for key in ("braze_id", "email_address", "phone"):
            if payload.get(key):
                index = {
                    "braze_id": self.by_braze_id,
                    "email_address": self.by_email,
                    "phone": self.by_phone,
                }
                p = index[key].get(payload[key].lower() if key == "email_address" else payload[key])
                if p is not None:
                    found.append(p)
        users = [_export(p, fields) for p in found]
        out: dict[str, Any] = {"message": "success", "users": users}
        if invalid:
            out["invalid_user_ids"] = invalid
        return 201, out


_SKIP = object()
_PLAIN_STRING_FIELDS = frozenset({"first_name", "last_name", "home_city", "phone"})
_SKIP_KEYS = field_rules.CONTROL_KEYS | frozenset(field_rules.PRIMARY_IDENTIFIERS)


def _same(old: Any, new: Any) -> bool:
    return type(old) is type(new) and old == new


def _unchanged(
    profile: dict, standard: list[tuple[str, Any]], custom: dict, structured: list[tuple[str, Any]]
) -> int:
    """Billable values in an update that the profile already holds exactly (nulls for fields it
    does not have count too: unsetting nothing)."""
    attrs = profile["custom_attributes"]
    free = field_rules.NON_BILLABLE_FIELDS
    n = sum(
        1
        for name, value in standard
        if name not in free and value is not _SKIP and _same(profile.get(name), value)
    )
    n += sum(1 for name, value in custom.items() if _same(attrs.get(name), value))
    n += sum(
        1 for name, value in structured if isinstance(value, list) and _same(attrs.get(name), value)
    )
    return n


def _check_nested(name: str, value: dict, depth: int = 0) -> None:
    if len(orjson.dumps(value)) > field_rules.MAX_NESTED_OBJECT_BYTES:
        raise ObjectError(f"nested attribute '{name}' is larger than 50 KB")
    for k, v in value.items():
        if " " in k or len(k) > field_rules.MAX_STRING_CHARS:
            raise ObjectError(
                f"nested key {k!r} in '{name}' is invalid (no spaces, at most 255 characters)"
            )
        if v is None:
            raise ObjectError(
                f"nested attribute '{name}' holds a null; all nested updates are dropped"
            )
        if isinstance(v, str) and len(v) > field_rules.MAX_STRING_CHARS:
            raise ObjectError(
                f"a value in '{name}' is longer than {field_rules.MAX_STRING_CHARS} characters"
            )
        if isinstance(v, dict) and "$time" not in v:
            _check_nested(name, v, depth + 1)


def _deep_merge(old: dict, new: dict) -> dict:
    out = dict(old)
    for k, v in new.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def _array_of_objects(current: Any, ops: dict) -> list:
    arr = list(current) if isinstance(current, list) else []
    for item in ops.get("$add") or []:
        arr.append(item)
    for rm in ops.get("$remove") or []:
        k, v = rm.get("$identifier_key"), rm.get("$identifier_value")
        arr = [o for o in arr if not (isinstance(o, dict) and o.get(k) == v)]
    for up in ops.get("$update") or []:
        k, v = up.get("$identifier_key"), up.get("$identifier_value")
        arr = [
            _deep_merge(o, up.get("$new_object", {}))
            if isinstance(o, dict) and o.get(k) == v
            else o
            for o in arr
        ]
    return arr


_STANDARD_EXPORT = (
    "external_id", "braze_id", "user_aliases", "first_name", "last_name", "email", "dob", "home_city",
    "country", "phone", "language", "time_zone", "gender", "push_subscribe", "email_subscribe",
)  # fmt: skip


def _export(p: dict, fields: list[str] | None = None) -> dict:
    out: dict[str, Any] = {"created_at": p.get("created_at")}
    for f in _STANDARD_EXPORT:
        if p.get(f) is not None:
            out[f] = p[f]
    out["custom_attributes"] = dict(p.get("custom_attributes") or {})
    for extra in ("custom_events", "purchases"):
        if p.get(extra):
            out[extra] = dict(p[extra])
    if fields:
        keep = set(fields) | {"external_id"}
        out = {k: v for k, v in out.items() if k in keep}
    return out
