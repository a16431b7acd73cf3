"""Where each sync keeps its things, and which destination and sync a name means: the naming
every other part of the sync agrees on."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from amp_braze.config import BrazeConfig, Config, SyncSpec

PLAN_POINTER = "tables/braze_sync_plan.json"
PLANS = "plans"
ATTRIBUTES = "braze_customer_attributes"
FIELD_REJECTIONS = "braze_customer_attributes_rejections"
MEMBERSHIPS = "segment_memberships"
SYNC_REJECTIONS = "braze_sync_rejections"


def destination_key(b: BrazeConfig) -> str:
    """A stable name for a Braze workspace + identifier kind (the single-destination shape keeps
    its sync state under this name)."""
    where = (
        b.instance.lower() if b.instance else (urlparse(b.rest_endpoint or "").hostname or "braze")
    )
    return f"{where}-{b.identifier}"


def destination(config: Config) -> str:
    """The state folder name of the single-destination shape (``braze:`` + ``sync:``)."""
    return destination_key(config.braze)


def the_sync(config: Config, spec: SyncSpec | None = None) -> SyncSpec:
    """The sync meant: the one given, else the only (or first) one configured."""
    return spec if spec is not None else next(iter(config.syncs.values()))


@dataclass(frozen=True)
class SyncPaths:
    """Where one sync keeps its things in storage. Syncs of one destination share its lease
    (one sends at a time, so together they stay under its rate limit); each has its own state."""

    state_key: str  # SyncState(storage, state_key): sync/<state_key>/
    lease: str
    plan_pointer: str
    plans: str
    rejections: str  # table: rows Braze refused
    attributes: str  # table the sync sends from
    field_rejections: str  # table: rows of that table set aside by field rules
    dry_runs: str


def sync_paths(config: Config, spec: SyncSpec | None = None) -> SyncPaths:
    spec = the_sync(config, spec)
    b = config.destination_of(spec)
    if spec.legacy:
        key = destination_key(b)
        return SyncPaths(
            key, f"sync/{key}/lease", PLAN_POINTER, PLANS, SYNC_REJECTIONS, ATTRIBUTES,
            FIELD_REJECTIONS, f"sync/{key}/dry_runs",
        )  # fmt: skip
    own = f"{spec.name}/attributes" if spec.sql else None
    return SyncPaths(
        state_key=f"{b.name}/syncs/{spec.name}",
        lease=f"sync/{b.name}/lease",
        plan_pointer=f"syncs/{spec.name}/braze_sync_plan.json",
        plans=f"syncs/{spec.name}/plans",
        rejections=f"{spec.name}/braze_sync_rejections",
        attributes=own or ATTRIBUTES,
        field_rejections=f"{spec.name}/attributes_rejections" if own else FIELD_REJECTIONS,
        dry_runs=f"sync/{b.name}/syncs/{spec.name}/dry_runs",
    )
