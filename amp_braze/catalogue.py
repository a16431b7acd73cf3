"""Every name amp_braze gives a table, an asset, a job or a storage folder, in one place.

The fixed names are part of the contract (DESIGN.md: tests, docs and users' runbooks use them).
A sync's names are data, decided when the configuration loads (``sync_names``): the single
``braze:`` shape is one sync named ``braze`` whose names are the ones it has always had, and every
other sync's names carry its own name. Nothing else spells them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

# Tables (and the assets that write them), under storage's tables/ folder.
PROFILES = "customer_profiles"
ATTRIBUTES = "braze_customer_attributes"
FIELD_REJECTIONS = "braze_customer_attributes_rejections"
MEMBERSHIPS = "segment_memberships"
CLUSTERS = "identity_clusters"
CURRENTS_EVENTS = "braze_currents_events"
ENGAGEMENT = "engagement_summary"
SYNC_PLAN = "braze_sync_plan"
SYNC = "braze_sync"
SYNC_REJECTIONS = "braze_sync_rejections"
SOURCES = "sources"  # feed tables: sources/<name>

# Groups and jobs.
PROFILES_GROUP = "customer_360"
AUDIENCES_GROUP = "audiences"
CURRENTS_GROUP = "braze_currents"
SINGLE_SYNC_GROUP = "braze_sync"
ALL_SYNCS_JOB = "braze_sync_job"
SINGLE_SYNC_SCHEDULE = "braze_sync_schedule"
SINGLE_SYNC = "braze"  # the name of the one sync of the braze: + sync: shape


def profile_key(customer_keys: set[str]) -> str:
    """The name of customer_profiles' key: the feeds' shared customer_key name, else
    ``customer_key`` (with identity resolution the feeds' key is ``amp_id``)."""
    return next(iter(customer_keys)) if len(customer_keys) == 1 else "customer_key"


def source_table(name: str) -> str:
    """The table (and asset path) a feed is read into."""
    return f"{SOURCES}/{name}"


def destination_key(instance: str | None, rest_endpoint: str | None, identifier: str) -> str:
    """A stable name for a Braze workspace + identifier kind (the single-destination shape keeps
    its sync state under this name)."""
    where = instance.lower() if instance else (urlparse(rest_endpoint or "").hostname or "braze")
    return f"{where}-{identifier}"


@dataclass(frozen=True)
class SyncNames:
    """What one sync is called in Dagster and where it keeps its things in storage. Syncs of one
    destination share its lease and pool (one sends at a time, so together they stay under its
    rate limit); each has its own state."""

    asset_prefix: tuple[str, ...]  # its assets' keys: prefix + (braze_sync_plan,), ...
    group: str
    sync_step: str  # the name of the step that sends
    job: str  # the job that runs it (the single shape's is braze_sync_job)
    plan_job: str  # the job that runs everything up to its plan (amp-braze plan)
    schedule: str
    workspace: str  # the resource key of its destination's Braze workspace
    pool: str  # the Dagster pool of everything that plans or sends to its destination
    state_key: str  # SyncState(storage, state_key): sync/<state_key>/
    lease: str
    plan_pointer: str
    plans: str
    rejections: str  # table: rows Braze refused
    attributes: str  # table the sync sends from
    field_rejections: str  # table: rows of that table set aside by field rules
    dry_runs: str
    own_attributes: bool  # whether ``attributes`` is its own query's result

    def key(self, name: str) -> list[str]:
        """The asset key path of one of its assets."""
        return [*self.asset_prefix, name]


def sync_names(
    sync: str, destination: str, destination_key: str, single: bool, own_sql: bool
) -> SyncNames:
    """The names of one sync; ``single`` is the braze: + sync: shape (one sync, its old names)."""
    if single:
        return SyncNames(
            asset_prefix=(),
            group=SINGLE_SYNC_GROUP,
            sync_step=SYNC,
            job=ALL_SYNCS_JOB,
            plan_job=f"{SYNC_PLAN}_job",
            schedule=SINGLE_SYNC_SCHEDULE,
            workspace="braze",
            pool=f"braze/{destination_key}",
            state_key=destination_key,
            lease=f"sync/{destination_key}/lease",
            plan_pointer=f"tables/{SYNC_PLAN}.json",
            plans="plans",
            rejections=SYNC_REJECTIONS,
            attributes=ATTRIBUTES,
            field_rejections=FIELD_REJECTIONS,
            dry_runs=f"sync/{destination_key}/dry_runs",
            own_attributes=False,
        )
    return SyncNames(
        asset_prefix=(sync,),
        group=sync,
        sync_step=f"{sync}_{SYNC}",
        job=f"{sync}_job",
        plan_job=f"{sync}_plan_job",
        schedule=f"{sync}_schedule",
        workspace=f"braze_{destination}",
        pool=f"braze/{destination}",
        state_key=f"{destination}/syncs/{sync}",
        lease=f"sync/{destination}/lease",
        plan_pointer=f"syncs/{sync}/{SYNC_PLAN}.json",
        plans=f"syncs/{sync}/plans",
        rejections=f"{sync}/{SYNC_REJECTIONS}",
        attributes=f"{sync}/attributes" if own_sql else ATTRIBUTES,
        field_rejections=f"{sync}/attributes_rejections" if own_sql else FIELD_REJECTIONS,
        dry_runs=f"sync/{destination}/syncs/{sync}/dry_runs",
        own_attributes=own_sql,
    )


# Event streams (events:): each its own small graph, sharing its destination's lease and pool.
EVENTS = "braze_events"
EVENT_REJECTIONS = "braze_events_rejections"


@dataclass(frozen=True)
class EventNames:
    """What one event stream is called in Dagster and where it keeps its ledger. The lease and
    pool are its destination's, the ones that destination's syncs hold."""

    asset_prefix: tuple[str, ...]
    group: str
    step: str
    job: str
    schedule: str
    workspace: str
    pool: str
    lease: str
    ledger: str  # folder of the ledger: events/<stream>/
    rejections: str  # table: rows set aside, with the rule

    def key(self, name: str) -> list[str]:
        return [*self.asset_prefix, name]


def event_names(stream: str, destination: str, destination_key: str, single: bool) -> EventNames:
    """The names of one event stream (``single``: its destination is the braze: section's)."""
    shared = sync_names(stream, destination, destination_key, single, False)
    return EventNames(
        asset_prefix=(stream,),
        group=stream,
        step=f"{stream}_{EVENTS}",
        job=f"{stream}_job",
        schedule=f"{stream}_schedule",
        workspace=shared.workspace,
        pool=shared.pool,
        lease=shared.lease,
        ledger=f"events/{stream}",
        rejections=f"{stream}/{EVENT_REJECTIONS}",
    )
