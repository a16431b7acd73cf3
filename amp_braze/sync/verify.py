"""Compare what a Braze workspace holds (as read back from the emulator or /users/export/ids) with
the wanted state, attribute by attribute. Used by the demo's final check and by the tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import polars as pl

from amp_braze.braze.field_rules import HELD_PREFIX, held_column, is_held_column
from amp_braze.braze.identifiers import ID, identifier_columns
from amp_braze.braze.payload import object_json
from amp_braze.braze.plan_columns import AttrSpec, flag, subscription_column
from amp_braze.config import Config, SyncSpec
from amp_braze.shards import shard_stores
from amp_braze.storage import Storage
from amp_braze.sync.wanted import Wanted, wanted_state

_PROFILE_KEYS = (
    "external_id",
    "braze_id",
    "created_at",
    "user_aliases",
    "custom_attributes",
    "custom_events",
    "purchases",
    "event_objects",
    "purchase_objects",
    "subscription_groups",  # states, not attributes (compared by the subscription tests)
)


def expected_profiles(
    config: Config, storage: Storage, syncs: list[SyncSpec], wanted: dict | None = None
) -> tuple[dict[str, dict], set[str]]:
    """Per external_id, every non-null wanted attribute as it goes on the wire (false segment
    flags left out: false and absent mean the same), over the given syncs of one workspace. An
    attribute whose value a field rule set aside (an invalid phone)
    is whatever Braze holds: its key in the profile is ``HELD``."""
    out: dict[str, dict] = {}
    booleans: set[str] = set()
    for spec in syncs:
        w = wanted[spec.name] if wanted else wanted_state(config, storage, spec)
        want, bools = _expected(config, spec, w)
        booleans |= bools
        for key, attrs in want.items():
            out.setdefault(key, {}).update(attrs)
    return out, booleans


HELD = object()  # in an expected profile: whatever Braze holds


def _expected(config: Config, spec: SyncSpec, w: Wanted) -> tuple[dict[str, dict], set[str]]:
    kind = config.destination_of(spec).identifier
    skip = set(identifier_columns(kind)) | {ID}
    skip |= {c for sc in w.subscriptions.values() for c in (sc, held_column(sc))}  # no attributes
    attrs = [AttrSpec(c) for c in w.table.columns if c not in skip and not is_held_column(c)]
    held = [c for c in w.table.columns if is_held_column(c) and c not in skip]
    table = w.table.with_columns([pl.lit(True).alias(flag(a.name)) for a in attrs])
    out = {}
    holds = w.table.select(held).rows() if held else [()] * w.table.height
    for raw, hold in zip(object_json(table, attrs, kind).to_list(), holds, strict=True):
        obj = orjson.loads(raw)
        key = obj.pop(kind) if kind != "user_alias" else obj.pop("user_alias")["alias_name"]
        obj.pop("_update_existing_only", None)
        out[key] = {
            k: v
            for k, v in obj.items()
            if v is not None and not (k in w.segment_booleans and v is False)
        }
        for col, on in zip(held, hold, strict=True):
            if on is not None:
                out[key][col[len(HELD_PREFIX) :]] = HELD
    return out, set(w.segment_booleans)


def flatten_braze_profile(user: dict, segment_booleans: set[str]) -> dict:
    flat = {k: v for k, v in user.items() if k not in _PROFILE_KEYS and v is not None}
    flat |= user.get("custom_attributes") or {}
    return {k: v for k, v in flat.items() if not (k in segment_booleans and v is False)}


@dataclass
class Comparison:
    wanted_users: int
    braze_users: int
    missing: list[str]
    unexpected: list[str]
    different: list[tuple[str, dict, dict]]
    subscription_states: int = 0  # (user, group) states wanted
    subscriptions_differing: list[tuple[str, str, str, str | None]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (
            self.missing or self.unexpected or self.different or self.subscriptions_differing
        )


def _subscription_states(
    config: Config, wanted: dict[str, Wanted], braze_users: list[dict], syncs: list[SyncSpec]
) -> tuple[int, list[tuple[str, str, str, str | None]]]:
    """(states wanted, (user, group, wanted, held) where Braze holds another) over the syncs'
    subscription groups; a user whose value was set aside keeps what Braze has."""
    held = {u.get("external_id"): u.get("subscription_groups") or {} for u in braze_users}
    states, off = 0, []
    for spec in syncs:
        if not spec.subscription_groups:
            continue
        w = wanted[spec.name]
        kind = config.destination_of(spec).identifier
        for sc in w.subscriptions.values():
            group = sc[len(subscription_column("")) :]
            rows = w.table.select(kind, sc).drop_nulls(sc)
            states += rows.height
            for user, state in rows.iter_rows():
                have = held.get(user, {}).get(group)
                if have != state:
                    off.append((user, group, state, have))
    return states, off


def compare(
    config: Config,
    storage: Storage,
    braze_users: list[dict],
    syncs: list[SyncSpec],
) -> Comparison:
    """What a workspace holds against what the given syncs to it want (over every shard)."""
    want: dict[str, dict] = {}
    booleans: set[str] = set()
    states, off = 0, []
    for store in shard_stores(storage, config.scale.shards):
        wanted = {spec.name: wanted_state(config, store, spec) for spec in syncs}
        shard_want, shard_booleans = expected_profiles(config, store, syncs, wanted)
        want |= shard_want
        booleans |= shard_booleans
        shard_states, shard_off = _subscription_states(config, wanted, braze_users, syncs)
        states, off = states + shard_states, off + shard_off
    have = {
        u.get("external_id") or u.get("braze_id"): flatten_braze_profile(u, booleans)
        for u in braze_users
    }
    for k, attrs in want.items():  # a value set aside: Braze keeps what it had, if anything
        for a in [a for a, v in attrs.items() if v is HELD]:
            if k in have and a in have[k]:
                attrs[a] = have[k][a]
            else:
                del attrs[a]
    # A profile holding nothing amp_braze manages (never sent, or every attribute unset after
    # the user left a campaign) is the same as no profile.
    want = {k: v for k, v in want.items() if v}
    have = {k: v for k, v in have.items() if v}
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    different = [(k, want[k], have[k]) for k in sorted(want) if k in have and want[k] != have[k]]
    return Comparison(len(want), len(have), missing, unexpected, different, states, off)
