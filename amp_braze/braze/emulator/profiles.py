"""The emulator's profile store: profiles as dicts, indexed by every identifier Braze resolves
(external_id, braze_id, user alias, email, phone), and how a value is applied to a profile
(null unsets, arrays are sets capped at the workspace's size, ``inc``, ``add``/``remove``, nested
objects replaced or deep-merged, arrays of objects by ``$add``/``$remove``/``$update``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from amp_braze.braze import field_rules
from amp_braze.braze.emulator.validation import SKIP


class ProfileStore:
    def __init__(self) -> None:
        self.by_external_id: dict[str, dict] = {}
        self.by_braze_id: dict[str, dict] = {}
        self.by_alias: dict[tuple[str, str], dict] = {}
        self.by_email: dict[str, dict] = {}
        self.by_phone: dict[str, dict] = {}
        self._id_prefix = uuid.uuid4().hex[:12]
        self._created = 0
        self._stamp_second, self._stamp = -1, ""

    def __len__(self) -> int:
        return len(self.by_braze_id)

    def users(self) -> list[dict]:
        """Every profile once, as /users/export/ids shows it."""
        seen: dict[int, dict] = {}
        for index in (self.by_external_id, self.by_braze_id):
            for p in index.values():
                seen.setdefault(id(p), p)
        return [exported(p) for p in seen.values()]

    def load(self, users: list[dict]) -> None:
        for user in users:
            p = dict(user)
            p["custom_attributes"] = dict(user.get("custom_attributes") or {})
            p["user_aliases"] = list(user.get("user_aliases") or [])
            self.index(p)

    def create(self, obj: dict, how: str) -> dict:
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
        self.index(profile)
        return profile

    def index(self, p: dict) -> None:
        if p.get("external_id"):
            self.by_external_id[p["external_id"]] = p
        self.by_braze_id[p["braze_id"]] = p
        for a in p.get("user_aliases") or []:
            self.by_alias[(a["alias_name"], a["alias_label"])] = p
        if p.get("email"):
            self.by_email[str(p["email"]).lower()] = p
        if p.get("phone"):
            self.by_phone[str(p["phone"])] = p

    def set(self, profile: dict, name: str, value: Any, merge: bool, array_cap: int) -> None:
        if value is SKIP:
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
                attrs[name] = arr[-array_cap:]
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
            attrs[name] = deduped[-array_cap:]
            return
        attrs[name] = value

    def export_ids(self, payload: dict) -> tuple[int, dict]:
        """/users/export/ids: the profiles asked for by external id, alias, braze_id, email or phone."""
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
        users = [exported(p, fields) for p in found]
        out: dict[str, Any] = {"message": "success", "users": users}
        if invalid:
            out["invalid_user_ids"] = invalid
        return 201, out


def _same(old: Any, new: Any) -> bool:
    return type(old) is type(new) and old == new


def unchanged(
    profile: dict, standard: list[tuple[str, Any]], custom: dict, structured: list[tuple[str, Any]]
) -> int:
    """Billable values in an update that the profile already holds exactly (nulls for fields it
    does not have count too: unsetting nothing)."""
    attrs = profile["custom_attributes"]
    free = field_rules.NON_BILLABLE_FIELDS
    n = sum(
        1
        for name, value in standard
        if name not in free and value is not SKIP and _same(profile.get(name), value)
    )
    n += sum(1 for name, value in custom.items() if _same(attrs.get(name), value))
    n += sum(
        1 for name, value in structured if isinstance(value, list) and _same(attrs.get(name), value)
    )
    return n


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


STANDARD_EXPORT = (
    "external_id", "braze_id", "user_aliases", "first_name", "last_name", "email", "dob", "home_city",
    "country", "phone", "language", "time_zone", "gender", "push_subscribe", "email_subscribe",
)  # fmt: skip


def exported(p: dict, fields: list[str] | None = None) -> dict:
    out: dict[str, Any] = {"created_at": p.get("created_at")}
    for f in STANDARD_EXPORT:
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
