"""/users/track's object semantics in the emulator: which profile an object addresses, what it
creates, what it changes and what it bills, per Braze's documentation of /users/track
(https://www.braze.com/docs/api/endpoints/user_data/post_user_track); where it is silent, the
choice is written next to the code. Called by ``core.Emulator`` under its lock.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from amp_braze.braze import field_rules
from amp_braze.braze.emulator import events
from amp_braze.braze.emulator.profiles import Profile, ProfileStore, unchanged
from amp_braze.braze.emulator.settings import Settings, Stats
from amp_braze.braze.emulator.validation import SKIP, ObjectError, standard, validate
from amp_braze.braze.event_rules import ECOMMERCE_EVENTS

# Keys of an attributes object that are not attributes.
CONTROL_AND_ID_KEYS = field_rules.CONTROL_KEYS | frozenset(field_rules.PRIMARY_IDENTIFIERS)
FATAL_NO_VALID = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
NO_IDENTIFIER = "'external_id' or 'braze_id' or 'user_alias' is required"


@dataclass
class Track:
    """One /users/track request against the emulator's profiles and counters."""

    store: ProfileStore
    stats: Stats
    settings: Settings
    blocklist: frozenset[str]  # external ids Braze refuses (a fault to inject)
    bad_request: frozenset[str]  # external ids whose request gets a 400 (a fault to inject)
    now: float = field(default_factory=time.time)  # a future event time becomes this
    # Profiles events and purchases changed in this request, by home, with the events and the
    # purchases they received: filed once at the end of the request, not once per object.
    checked_out: dict[str, tuple[Profile, list, list]] = field(default_factory=dict)

    def __call__(self, payload: dict) -> tuple[int, dict]:
        """Answer one /users/track body: (status, response body)."""
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
        if self.bad_request and any(
            isinstance(o, dict) and o.get("external_id") in self.bad_request
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
                        self.apply_attributes(obj)
                    else:
                        self.apply_event(kind, obj)
                    processed[kind] += 1
                except ObjectError as e:
                    errors.append({"type": str(e), "input_array": kind, "index": i})
        for profile, new_events, new_purchases in self.checked_out.values():
            self.store.save(profile)
            self.store.add_objects(profile, new_events, new_purchases)
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

    def resolve(self, obj: dict) -> tuple[Profile | None, bool, str]:
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
            if ext in self.blocklist:
                raise ObjectError("provided external_id is blacklisted and disallowed")
            if len(ext.encode()) > field_rules.MAX_EXTERNAL_ID_BYTES:
                raise ObjectError(
                    f"EXTERNAL_USER_ID_TOO_LARGE: external_id exceeds the maximum allowed length of "
                    f"{field_rules.MAX_EXTERNAL_ID_BYTES} bytes"
                )
            return self.find("external_id", ext), not (update_only or False), "external_id"
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
            return self.find("user_alias", key), may_create, "user_alias"
        if primaries == ["braze_id"]:
            return self.find("braze_id", str(obj["braze_id"])), False, "braze_id"
        # Secondary identifiers: email wins over phone; an unknown email creates an email-only user.
        if obj.get("email") is not None:
            return (
                self.find("email", obj["email"]),
                not (update_only or False),
                "email",
            )
        if obj.get("phone") is not None:
            return self.find("phone", str(obj["phone"])), not (update_only or False), "phone"
        raise ObjectError(NO_IDENTIFIER)

    def find(self, kind: str, key: Any) -> Profile | None:
        if self.checked_out:  # a profile this request changed is read as changed
            open_ = self.checked_out.get(self.store.home_of(kind, key))
            if open_ is not None:
                return open_[0]
        return self.store.find(kind, key)

    def apply_attributes(self, obj: dict) -> None:
        profile, may_create, how = self.resolve(obj)
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
            profile = self.create(obj, how)
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

    def apply_event(self, kind: str, obj: dict) -> None:
        """One object of ``events`` or ``purchases``: checked and recorded by ``events``."""
        profile, may_create, how = self.resolve(obj)
        accepted = events.accept(kind, obj, self.now)
        if profile is None and not may_create and how == "braze_id":
            raise ObjectError("'braze_id' does not match any user")
        self.stats.event_properties_dropped += accepted.dropped_properties
        self.stats.ecommerce_events_processed += accepted.kind in ECOMMERCE_EVENTS
        if profile is None:
            if not may_create:
                return  # as for attributes: accepted, nothing recorded
            profile = self.create(obj, how)
            if how != "external_id":  # filed (and indexed) now, so later objects find it
                self.store.save(profile)
        home = profile.home or profile["external_id"]  # where the end of the request files it
        open_ = self.checked_out.get(home)
        if open_ is None:
            open_ = self.checked_out[home] = (profile, [], [])
        events.record(profile, accepted, self.stats, (open_[1], open_[2]))

    def create(self, obj: dict, how: str) -> Profile:
        self.stats.users_created += 1
        return self.store.create(obj, how)
