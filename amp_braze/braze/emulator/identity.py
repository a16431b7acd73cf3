"""/users/merge and /users/external_ids/rename, as Braze documents them.

Merge (https://www.braze.com/docs/api/endpoints/user_data/post_users_merge): up to 50 merges per
request; the user to keep keeps every field it has, fields it lacks are filled from the merged user
(custom attributes included), custom events and purchases are added together, and the merged user
is removed. Braze queues merges (202) and applies them later; the emulator applies them before it
answers, which a client cannot tell apart. A merge whose user to merge no longer exists (a merge
sent again after a crash) changes nothing.

Rename (https://www.braze.com/docs/api/endpoints/user_data/external_id_migration/post_external_ids_rename):
up to 50 renames per request; a rename is refused when the new id is taken or the current id is
unknown, and reported in ``rename_errors``.
"""

from __future__ import annotations

from typing import Any

from amp_braze.braze.emulator import events
from amp_braze.braze.emulator.profiles import Profile, ProfileStore
from amp_braze.braze.field_rules import MAX_IDENTITY_UPDATES


def _find(store: ProfileStore, identifier: Any) -> Profile | None:
    if not isinstance(identifier, dict):
        return None
    if "external_id" in identifier:
        return store.find("external_id", identifier["external_id"])
    alias = identifier.get("user_alias")
    if isinstance(alias, dict):
        return store.find("user_alias", (alias.get("alias_name"), alias.get("alias_label")))
    return None


def _fill(keep: dict, merged: dict) -> None:
    """Fields the kept user lacks come from the merged one; counters are added together."""
    for key, value in merged.items():
        if key in ("braze_id", "external_id", "created_at", "user_aliases"):
            continue
        if key == "custom_attributes":
            custom = keep.setdefault("custom_attributes", {})
            for name, v in value.items():
                if custom.get(name) is None and v is not None:
                    custom[name] = v
        elif key in ("custom_events", "purchases"):
            events.merge_counters(keep, merged, key)
        elif keep.get(key) is None and value is not None:
            keep[key] = value


def merge(store: ProfileStore, payload: dict) -> tuple[int, dict, int]:
    """Apply ``merge_updates``; returns (status, body, merges applied)."""
    updates = payload.get("merge_updates")
    if not isinstance(updates, list) or not updates:
        return 400, {"message": "'merge_updates' must be a non-empty array"}, 0
    if len(updates) > MAX_IDENTITY_UPDATES:
        return 400, {"message": f"at most {MAX_IDENTITY_UPDATES} merge_updates per request"}, 0
    for u in updates:
        if not isinstance(u, dict) or not all(
            isinstance(u.get(k), dict) for k in ("identifier_to_merge", "identifier_to_keep")
        ):
            return (
                400,
                {"message": "each merge needs identifier_to_merge and identifier_to_keep"},
                0,
            )
    applied = 0
    for u in updates:
        merged, keep = _find(store, u["identifier_to_merge"]), _find(store, u["identifier_to_keep"])
        if merged is None or keep is None or merged.home == keep.home:
            continue
        store.move_objects(merged, keep)
        store.remove(merged)
        _fill(keep, merged)
        store.save(keep)
        applied += 1
    return 202, {"message": "success"}, applied


def rename(store: ProfileStore, payload: dict) -> tuple[int, dict, int]:
    """Apply ``external_id_renames``; returns (status, body, renames applied)."""
    renames = payload.get("external_id_renames")
    if not isinstance(renames, list) or not renames:
        return 400, {"message": "'external_id_renames' must be a non-empty array"}, 0
    if len(renames) > MAX_IDENTITY_UPDATES:
        return (
            400,
            {"message": f"at most {MAX_IDENTITY_UPDATES} external_id_renames per request"},
            0,
        )
    done: list[str] = []
    errors: list[dict] = []
    for r in renames:
        current = r.get("current_external_id") if isinstance(r, dict) else None
        new = r.get("new_external_id") if isinstance(r, dict) else None
        p = store.find("external_id", current) if isinstance(current, str) else None
        if p is None or not isinstance(new, str) or not new:
            errors.append({"current_external_id": current, "message": "user not found"})
            continue
        if store.find("external_id", new) is not None:
            errors.append({"current_external_id": current, "message": "new_external_id in use"})
            continue
        p["external_id"] = new
        store.save(p)
        done.append(new)
    body: dict[str, Any] = {"message": "success", "external_ids": done}
    if errors:
        body["rename_errors"] = errors
    return 202, body, len(done)
