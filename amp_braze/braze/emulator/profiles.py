"""The emulator's profile store, and how a value is applied to a profile (null unsets, arrays are
sets capped at the workspace's size, ``inc``, ``add``/``remove``, nested objects replaced or
deep-merged, arrays of objects by ``$add``/``$remove``/``$update``).

Profiles are kept packed, so that a workspace of ten million users fits in a few GB: each is one
``marshal`` blob of its values, its field names kept once per distinct set of names (a "shape"),
its braze_id and creation second as small numbers. A request checks a profile out as a plain dict
(``find``), changes it and files it back (``save``). Profiles are filed under their external_id
(or their braze_id when they have none); the other identifiers Braze resolves (braze_id, user
alias, email, phone) are indexed only once a request first looks one up, since a sync by
external_id never does.
"""

from __future__ import annotations

import itertools
import marshal
import time
import uuid
from typing import Any

from amp_braze.braze import field_rules
from amp_braze.braze.emulator.validation import SKIP

_SECONDARY = ("braze_id", "user_alias", "email", "phone")


class Profile(dict):
    """A profile checked out of the store: Braze's fields as a dict, and the key it is filed under."""

    __slots__ = ("home",)


def _identifiers(p: dict) -> list[tuple[str, Any]]:
    """The secondary identifiers a profile can be found by."""
    out: list[tuple[str, Any]] = [("braze_id", p["braze_id"])]
    out += [
        ("user_alias", (a["alias_name"], a["alias_label"])) for a in p.get("user_aliases") or []
    ]
    if p.get("email"):
        out.append(("email", str(p["email"]).lower()))
    if p.get("phone"):
        out.append(("phone", str(p["phone"])))
    return out


class ProfileStore:
    def __init__(self) -> None:
        self._home: dict[str, bytes] = {}  # external_id (or "\0" + braze_id) -> packed profile
        self._indexes: dict[str, dict[Any, str]] = {}  # built on first use, then kept up to date
        self._layouts: dict[tuple, tuple] = {}  # (field names, custom names) -> how to pack
        self._shapes: list[tuple] = []  # shape id -> (field names, custom names, where ids are)
        self._id_prefix = uuid.uuid4().hex[:12]
        self._created = 0
        self._stamps: dict[str, int] = {}
        self._stamp_list: list[str] = []
        self._stamp_second, self._stamp = -1, ""
        # The event and purchase objects a profile received, by braze_id (it survives renames):
        # one marshal chunk (events, purchases) per request, so that adding some costs what they
        # weigh, not what the profile already holds.
        self._objects: dict[str, list[bytes]] = {}

    def __len__(self) -> int:
        return len(self._home)

    # -- packing -----------------------------------------------------------------------------------
    # A blob is marshal((shape id, field values, custom attribute values)); in the field values the
    # slot of custom_attributes is empty, a braze_id this store made is its number and a creation
    # time is the number of its second in ``_stamp_list``.
    def _pack(self, p: dict) -> bytes:
        custom = p["custom_attributes"]
        shape = (tuple(p), tuple(custom))
        layout = self._layouts.get(shape)
        if layout is None:
            layout = self._layouts[shape] = self._new_shape(*shape)
        sid, ib, ic, ica = layout
        values = list(p.values())
        if ib is not None:
            b = values[ib]
            if len(b) == 24 and b.startswith(self._id_prefix):
                values[ib] = int(b[12:], 16)
        if ic is not None:
            values[ic] = self._stamps.get(values[ic], values[ic])
        values[ica] = None
        return marshal.dumps((sid, values, tuple(custom.values())))

    def _new_shape(self, fields: tuple[str, ...], custom: tuple[str, ...]) -> tuple:
        def at(name: str) -> int | None:
            return fields.index(name) if name in fields else None

        self._shapes.append((fields, custom, at("braze_id"), at("created_at")))
        return (
            len(self._shapes) - 1,
            at("braze_id"),
            at("created_at"),
            fields.index("custom_attributes"),
        )

    def _unpack(self, blob: bytes, home: str) -> Profile:
        sid, values, custom_values = marshal.loads(blob)
        fields, custom, ib, ic = self._shapes[sid]
        if ib is not None and type(values[ib]) is int:
            values[ib] = f"{self._id_prefix}{values[ib]:012x}"
        if ic is not None and type(values[ic]) is int:
            values[ic] = self._stamp_list[values[ic]]
        p = Profile(zip(fields, values, strict=False))  # our own blobs: lengths match
        p["custom_attributes"] = dict(zip(custom, custom_values, strict=False))
        p.home = home
        return p

    # -- finding and filing ------------------------------------------------------------------------
    def find(self, kind: str, key: Any) -> Profile | None:
        """The profile with this identifier: ``external_id``, ``braze_id``, ``user_alias``
        (name, label), ``email`` (any case) or ``phone``."""
        home = self.home_of(kind, key)
        blob = self._home.get(home) if home is not None else None
        return None if blob is None else self._unpack(blob, home)

    def home_of(self, kind: str, key: Any) -> str | None:
        """The key a profile with this identifier is filed under (or would be, for an
        external_id), None when no profile has it."""
        if kind == "external_id":
            return key if isinstance(key, str) and not key.startswith("\x00") else None
        if kind == "email":
            key = str(key).lower()
        return self._index(kind).get(key)

    def _index(self, kind: str) -> dict[Any, str]:
        if not self._indexes:
            self._indexes = {k: {} for k in _SECONDARY}
            for home, blob in self._home.items():
                for k, key in _identifiers(self._unpack(blob, home)):
                    self._indexes[k][key] = home
        return self._indexes[kind]

    def save(self, p: Profile) -> None:
        """File a changed (or new) profile back, under its external_id if it has one."""
        home = p["external_id"] if p.get("external_id") else "\x00" + p["braze_id"]
        if self._indexes and p.home is not None:
            self._unindex(p.home)
        if p.home is not None and p.home != home:
            self._home.pop(p.home, None)  # renamed
        self._home[home] = self._pack(p)
        p.home = home
        for kind, key in _identifiers(p) if self._indexes else ():
            self._indexes[kind][key] = home

    def add_objects(self, p: dict, events: list[dict], purchases: list[dict]) -> None:
        chunk = marshal.dumps((events, purchases))
        self._objects.setdefault(p["braze_id"], []).append(chunk)

    def objects(self, p: dict) -> tuple[list[dict], list[dict]]:
        """The profile's event and purchase objects, oldest first."""
        events: list[dict] = []
        purchases: list[dict] = []
        for chunk in self._objects.get(p["braze_id"], ()):
            e, b = marshal.loads(chunk)
            events += e
            purchases += b
        return events, purchases

    def move_objects(self, src: dict, dst: dict) -> None:
        """/users/merge: the merged user's objects follow the kept user's."""
        moved = self._objects.pop(src["braze_id"], None)
        if moved:
            self._objects.setdefault(dst["braze_id"], []).extend(moved)

    def remove(self, p: Profile) -> None:
        self._objects.pop(p.get("braze_id"), None)
        if p.home is not None:
            if self._indexes:
                self._unindex(p.home)
            self._home.pop(p.home, None)
            p.home = None

    def _unindex(self, home: str) -> None:
        blob = self._home.get(home)
        if blob is None:
            return
        for kind, key in _identifiers(self._unpack(blob, home)):
            if self._indexes[kind].get(key) == home:
                del self._indexes[kind][key]

    def users(self, offset: int = 0, limit: int | None = None) -> list[dict]:
        """Every profile once, as /users/export/ids shows it, with the event and purchase objects
        it holds (``event_objects``, ``purchase_objects``); ``offset`` and ``limit`` page through
        them in a stable order while nothing is written."""
        out = []
        end = None if limit is None else offset + limit
        for home, blob in itertools.islice(self._home.items(), offset, end):
            p = self._unpack(blob, home)
            out.append(exported(p, objects=self.objects(p)))
        return out

    def load(self, users: list[dict]) -> None:
        for user in users:
            p = Profile(user)
            p.home = None
            p["custom_attributes"] = dict(user.get("custom_attributes") or {})
            p["user_aliases"] = list(user.get("user_aliases") or [])
            events, purchases = p.pop("event_objects", []), p.pop("purchase_objects", [])
            self.save(p)
            if events or purchases:
                self.add_objects(p, events, purchases)

    def create(self, obj: dict, how: str) -> Profile:
        """A new profile for the object's identifier; filed when the caller saves it."""
        self._created += 1
        now = int(time.time())
        if now != self._stamp_second:  # one strftime a second, not one a user
            self._stamp_second = now
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
            if self._stamp not in self._stamps:
                self._stamps[self._stamp] = len(self._stamp_list)
                self._stamp_list.append(self._stamp)
        profile = Profile(
            braze_id=f"{self._id_prefix}{self._created:012x}",  # 24 hex characters, unique
            created_at=self._stamp,
            user_aliases=[],
            custom_attributes={},
        )
        profile.home = None
        if how == "external_id":
            profile["external_id"] = obj["external_id"]
        elif how == "user_alias":
            profile["user_aliases"] = [dict(obj["user_alias"])]
        elif how in ("email", "phone"):
            profile[how] = obj[how]
        return profile

    def set(self, profile: dict, name: str, value: Any, merge: bool, array_cap: int) -> None:
        if value is SKIP:
            return
        if name in field_rules.STANDARD_FIELDS:
            if value is None:
                profile.pop(name, None)
            else:
                profile[name] = value
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
            p = self.find("external_id", ext)
            if p is None:
                invalid.append(ext)
            else:
                found.append(p)
        for a in aliases:
            p = self.find("user_alias", (a.get("alias_name"), a.get("alias_label")))
            if p is not None:
                found.append(p)
        for key, kind in (("braze_id", "braze_id"), ("email_address", "email"), ("phone", "phone")):
            if payload.get(key):
                p = self.find(kind, payload[key])
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


def exported(
    p: dict, fields: list[str] | None = None, objects: tuple[list, list] | None = None
) -> dict:
    """A profile as /users/export/ids shows it; with ``objects``, its event and purchase objects
    too (for /_emulator/users and the state file: Braze's export has no such field)."""
    out: dict[str, Any] = {"created_at": p.get("created_at")}
    for f in STANDARD_EXPORT:
        if p.get(f) is not None:
            out[f] = p[f]
    out["custom_attributes"] = dict(p.get("custom_attributes") or {})
    # custom_events and purchases per name: {"count", "first", "last"}; group id: state
    for extra in ("custom_events", "purchases", "subscription_groups"):
        if p.get(extra):
            out[extra] = dict(p[extra])
    if objects is not None:
        if objects[0]:
            out["event_objects"] = objects[0]
        if objects[1]:
            out["purchase_objects"] = objects[1]
    if fields:
        keep = set(fields) | {"external_id"}
        out = {k: v for k, v in out.items() if k in keep}
    return out
