"""Planning against the current sync state, and sending a plan: the logic the sync assets run."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from amp_braze.braze.client import BatchResult, BrazeClient, SendStats
from amp_braze.braze.field_rules import MAX_IDENTITY_UPDATES
from amp_braze.braze.identifiers import ID
from amp_braze.braze.payload import Request, data_points, object_json, requests
from amp_braze.braze.plan_columns import ADD, NEW, REMOVE, WHOLE, AttrSpec, flag
from amp_braze.catalogue import SyncNames
from amp_braze.config import BrazeConfig, Config, SyncSpec
from amp_braze.failpoints import failpoint
from amp_braze.identity.ids import IdMap
from amp_braze.metadata import Laps
from amp_braze.storage import Storage
from amp_braze.sync import merges
from amp_braze.sync import subscriptions as subscription
from amp_braze.sync.lease import Lease, LeaseLost
from amp_braze.sync.plan import Plan, plan_delta
from amp_braze.sync.state import StateMovedError, StateView, SyncState
from amp_braze.sync.wanted import wanted_state

log = logging.getLogger(__name__)


class Workspace(Protocol):
    """What sending needs of a Braze workspace (amp_braze.resources.BrazeWorkspace is one): a
    client, its first request held back to ``start_at``."""

    def client(self, start_at: float = 0.0, retry_unanswered: bool = True) -> BrazeClient: ...


ENCODE_CHUNK_ROWS = 30_000
KEEP_PLANS = 3


def save_plan(storage: Storage, plan: Plan, paths: SyncNames) -> str:
    """Write the plan's rows under a name of their own, then the pointer that names them: a
    reader sees one plan whole, never one plan's rows with another's description."""
    pointer, plans = paths.plan_pointer, paths.plans
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"{plans}/{stamp}-{uuid.uuid4().hex[:12]}.parquet"
    uri = storage.write_parquet(name, plan.table)
    storage.write_json(
        pointer,
        {
            "table": name,
            "state_fingerprint": plan.state_fingerprint,
            "attrs": [[a.name, a.array_ops] for a in plan.attrs],
            "subscriptions": plan.subscriptions,
            "wanted_users": plan.wanted_users,
            "stats": plan.stats,
        },
    )
    for old in storage.list(plans)[:-KEEP_PLANS]:
        storage.delete(old)
    return uri


def load_plan(storage: Storage, paths: SyncNames) -> Plan:
    man = storage.read_json(paths.plan_pointer)
    if man is None or "table" not in man:
        raise FileNotFoundError("no braze_sync_plan yet: materialize braze_sync_plan first")
    return Plan(
        table=storage.read_parquet(man["table"]),
        attrs=[AttrSpec(n, bool(arr)) for n, arr in man["attrs"]],
        wanted_users=man["wanted_users"],
        state_fingerprint=man["state_fingerprint"],
        stats=man["stats"],
        subscriptions=man.get("subscriptions", []),
    )


def make_plan(
    config: Config,
    storage: Storage,
    spec: SyncSpec,
    view: StateView | None = None,
) -> Plan:
    view = view or SyncState(storage, spec.names.state_key).current()
    w = wanted_state(config, storage, spec)
    plan = plan_delta(
        w.side,
        view.side(),
        config.destination_of(spec),
        w.segment_booleans,
        w.segment_array,
        w.protected_ids,
    )
    if w.subscriptions:  # values that are no state: set aside, with the reason
        rejected = subscription.rejections(w.side.frame, w.subscriptions)
        plan.stats["subscription_rejections"] = rejected.height
        plan.stats["subscription_rejected_sample"] = rejected.head(20).to_dicts()
    plan.state_fingerprint = view.fingerprint
    plan.stats["state_version"] = view.version
    plan.stats["pending_checkpoints"] = len(view.pending)
    return plan


def window_rows(config: Config, destination: BrazeConfig) -> int:
    """Plan rows encoded (and, when sending, recorded as going out) at a time: at most half a
    checkpoint, so what a crash leaves uncertain stays within about one checkpoint; whole
    requests of the destination's own size."""
    per = destination.objects_per_request
    rows = min(ENCODE_CHUNK_ROWS, config.sync.checkpoint_rows // 2)
    return max(per, rows // per * per)  # whole requests: no half-empty batch at a boundary


def iter_requests(
    plan: Plan,
    config: Config,
    spec: SyncSpec,
    before_window: Callable[[pl.DataFrame], None] | None = None,
) -> Iterator[Request]:
    """The plan's requests, encoded a window at a time so payloads are never all in memory;
    ``before_window`` runs before each window's first request is handed out."""
    b = config.destination_of(spec)
    for chunk in plan.table.iter_slices(window_rows(config, b)):
        if plan.subscriptions:  # rows whose only change is a subscription state: none here
            chunk = chunk.filter(subscription.track_rows(plan.attrs))
        if before_window is not None:
            before_window(chunk)
        objs = object_json(chunk, plan.attrs, b.identifier, b.update_existing_only)
        yield from requests(objs, chunk.get_column(ID), max_objects=b.objects_per_request)


def write_dry_run(
    plan: Plan, config: Config, path: str | os.PathLike, spec: SyncSpec
) -> tuple[int, int]:
    """Write the planned request bodies as JSON lines; returns (requests, objects)."""
    n_req = n_obj = 0
    with open(path, "wb") as f:
        for req in iter_requests(plan, config, spec):
            f.write(req.body + b"\n")
            n_req += 1
            n_obj += len(req.ids)
    return n_req, n_obj


@dataclass
class SyncReport:
    plan: Plan
    replanned: bool
    stats: SendStats
    users_sent: int = 0
    attributes_sent: int = 0
    data_points: int = 0
    checkpoints: int = 0
    state_version: int = 0
    intents: int = 0
    pruned: tuple[int, int] = (0, 0)  # old state versions, folded journal entries deleted
    lease_wait_seconds: float = 0.0
    duration: float = 0.0
    rejected: pl.DataFrame = field(default_factory=pl.DataFrame)
    retried_from_last_run: int = 0
    users_merged: int = 0  # identity merges sent to Braze before the plan (/users/merge)
    users_renamed: int = 0  # ... where the surviving id was not in Braze yet (rename)
    subscriptions: subscription.SubscriptionReport = field(
        default_factory=subscription.SubscriptionReport
    )
    seconds: dict[str, float] = field(default_factory=dict)  # per stage

    @property
    def requests_per_second(self) -> float:
        return self.stats.requests / self.duration if self.duration else 0.0


def run_sync(
    config: Config,
    storage: Storage,
    plan: Plan,
    run_id: str,
    spec: SyncSpec,
    workspace: Workspace,
    on_progress: Callable[[SendStats], None] | None = None,
) -> SyncReport:
    """Send a plan, holding the destination's lease (one sync at a time per Braze workspace,
    whatever the Dagster instance allows). Before each window of rows goes out an intent is
    recorded; accepted rows are checkpointed every ``sync.checkpoint_rows`` and folded into a new
    state version at the end, also when the run fails. Rows Braze rejects are kept with the
    reason and, not being in the state, sent again by the next sync. A plan computed against
    another state than the one the lease shows is recomputed."""
    start = time.perf_counter()
    paths = spec.names
    state = SyncState(storage, paths.state_key)
    lease = Lease(storage.shared, paths.lease, run_id, ttl=config.sync.lease_seconds)
    waited = lease.acquire(config.sync.lease_wait_seconds)
    try:
        report = _send(config, storage, state, lease, plan, run_id, workspace, on_progress, spec)
    finally:
        lease.release()
    report.lease_wait_seconds = waited
    report.duration = time.perf_counter() - start
    return report


def _send(
    config: Config,
    storage: Storage,
    state: SyncState,
    lease: Lease,
    plan: Plan,
    run_id: str,
    workspace: Workspace,
    on_progress: Callable[[SendStats], None] | None,
    spec: SyncSpec,
) -> SyncReport:
    failpoint("sync.lease_taken")
    lap = Laps()
    b = config.destination_of(spec)
    paths = spec.names
    client = workspace.client(start_at=lease.next_request_at)
    view = state.current()
    lap("read state")
    merged = (0, 0)
    if config.identity is not None and b.identifier == "external_id":
        merged = _send_merges(storage, state, view, client, paths)
        lap("identity merges")
    if any(merged):
        view = state.current()
    replanned = False
    if plan.state_fingerprint != view.fingerprint:
        log.info(
            "the plan was computed against %s, the state is now %s: planning again",
            plan.state_fingerprint,
            view.fingerprint,
        )
        plan = make_plan(config, storage, spec, view)
        replanned = True
        lap("plan again")

    report = SyncReport(plan=plan, replanned=replanned, stats=client.stats, seconds=lap.seconds)
    report.users_merged, report.users_renamed = merged
    flags = [flag(a.name) for a in plan.attrs]
    value_cols = [ID] + [c for a in plan.attrs for c in (a.name, flag(a.name))]
    point_cols = (
        [ID, NEW]
        + [c for c in (WHOLE,) if c in plan.table.columns]
        + [
            c
            for a in plan.attrs
            for c in (a.name, flag(a.name))
            + ((a.name + ADD, a.name + REMOVE) if a.array_ops else ())
        ]
    )
    buffer: list[str] = []
    rejected: list[tuple[str, str]] = []

    def flush() -> None:
        if not buffer:
            return
        rows = plan.table.filter(pl.col(ID).is_in(pl.Series(buffer, dtype=pl.String).implode()))
        state.write_checkpoint(rows.select(value_cols))
        report.checkpoints += 1
        report.users_sent += rows.height
        report.attributes_sent += int(rows.select(pl.sum_horizontal(flags).sum()).item())
        report.data_points += int(data_points(rows.select(point_cols), plan.attrs).sum())
        buffer.clear()

    def going_out(window: pl.DataFrame, cols: list[str] = flags) -> None:
        if lease.lost.is_set():
            raise LeaseLost(
                f"this sync lost its lease on {storage.uri(state.base)} (it stalled for more "
                "than sync.lease_seconds and another run took over); it stops sending"
            )
        state.write_intent(window.select([ID, *cols]))
        report.intents += 1
        failpoint("sync.window_recorded")

    def subscriptions_going_out(window: pl.DataFrame) -> None:
        going_out(window, [c for c in window.columns if c != ID])

    def subscriptions_accepted(rows: pl.DataFrame) -> None:
        state.write_checkpoint(rows)
        report.checkpoints += 1

    def on_result(result: BatchResult) -> None:
        buffer.extend(result.accepted)
        rejected.extend(result.rejected)
        if len(buffer) >= config.sync.checkpoint_rows:
            flush()
        if on_progress:
            on_progress(client.stats)

    try:
        try:
            client.send(iter_requests(plan, config, spec, going_out), on_result)
            if plan.subscriptions:  # after the attributes: a new user's profile exists by now
                flush()
                subscription.send(
                    plan.table,
                    plan.subscriptions,
                    client,
                    window_rows(config, b),
                    subscriptions_going_out,
                    subscriptions_accepted,
                    report.subscriptions,
                )
        finally:
            flush()  # whatever Braze accepted is recorded, even when the run stops early
            lease.next_request_at = client.next_request_at()
            client.close()
            lap("send")
    finally:
        # Fold this run's journal into a version even when it failed: the state stays whole
        # and the next plan starts from it.
        if report.intents:
            report.state_version = state.commit().version
            lap("commit state")
            report.pruned = state.prune(config.sync.keep_state_versions)
        else:
            report.state_version = view.version
        report.rejected = _rejections(rejected + report.subscriptions.rejected, run_id)
        report.retried_from_last_run = _retried(storage, plan, paths.rejections)
        storage.write_table(paths.rejections, report.rejected)
        lap("rejections")
    return report


def _send_merges(
    storage: Storage,
    state: SyncState,
    view: StateView,
    client: BrazeClient,
    paths: SyncNames,
) -> tuple[int, int]:
    """Send the identity merges this sync's Braze profiles need, then record them in the state
    (see amp_braze.sync.merges); returns (merged, renamed)."""
    all_merges = IdMap(storage.shared).merges()
    if all_merges.height == 0:
        return 0, 0
    state_ids = view.frame.select(ID).collect().get_column(ID)
    held = all_merges.filter(pl.col(merges.ABSORBED).is_in(state_ids.implode()))
    if held.height == 0:  # Braze holds none of the absorbed profiles: nothing to read further
        return 0, 0
    wanted_ids = storage.scan_table(paths.attributes).select(ID).collect().get_column(ID)
    to_merge, renames = merges.due(held, state_ids, wanted_ids)
    if to_merge.height == 0 and renames.height == 0:
        return 0, 0
    for chunk in renames.iter_slices(MAX_IDENTITY_UPDATES):
        client.post_identity(
            "/users/external_ids/rename",
            {
                "external_id_renames": [
                    {"current_external_id": a, "new_external_id": k} for a, k in chunk.iter_rows()
                ]
            },
        )
    for chunk in to_merge.iter_slices(MAX_IDENTITY_UPDATES):
        client.post_identity(
            "/users/merge",
            {
                "merge_updates": [
                    {
                        "identifier_to_merge": {"external_id": a},
                        "identifier_to_keep": {"external_id": k},
                    }
                    for a, k in chunk.iter_rows()
                ]
            },
        )
    base = state.commit()
    folded = merges.apply_merges(base.table, to_merge, renames)
    if not state.write_version(base.version + 1, folded, base.folded_through):
        raise StateMovedError(
            f"the sync state under {storage.uri(state.base)} was committed by another writer "
            "while this sync recorded identity merges; they are sent again next run"
        )
    log.info("identity: merged %d and renamed %d Braze profiles", to_merge.height, renames.height)
    return to_merge.height, renames.height


def _rejections(rejected: list[tuple[str, str]], run_id: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            ID: [r[0] for r in rejected],
            "reason": [r[1] for r in rejected],
            "run_id": [run_id] * len(rejected),
        },
        schema={ID: pl.String, "reason": pl.String, "run_id": pl.String},
    ).with_columns(pl.lit(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())).alias("rejected_at"))


def _retried(storage: Storage, plan: Plan, table: str) -> int:
    """How many rows Braze rejected last time are in this run's plan again."""
    if not storage.table_exists(table):
        return 0
    prev = storage.read_table(table).get_column(ID)
    return int(plan.table.get_column(ID).is_in(prev.implode()).sum())
