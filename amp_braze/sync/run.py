"""Planning against the current sync state, and sending a plan: the logic the sync assets run."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlparse

import polars as pl

from amp_braze.audiences.memberships import segment_attributes
from amp_braze.braze.client import BatchResult, BrazeClient, SendStats
from amp_braze.braze.identifiers import ID, identifier_columns
from amp_braze.braze.instances import endpoint_for
from amp_braze.braze.payload import (
    ADD,
    NEW,
    REMOVE,
    WHOLE,
    AttrSpec,
    Request,
    data_points,
    flag,
    object_json,
    requests,
)
from amp_braze.config import Config
from amp_braze.failpoints import failpoint
from amp_braze.profiles.attributes import sent_columns
from amp_braze.storage import Storage
from amp_braze.sync.lease import Lease, LeaseLost
from amp_braze.sync.plan import Plan, Side, plan_delta, zip_or_join
from amp_braze.sync.state import StateView, SyncState

log = logging.getLogger(__name__)

ATTRIBUTES = "braze_customer_attributes"
FIELD_REJECTIONS = "braze_customer_attributes_rejections"
MEMBERSHIPS = "segment_memberships"
SYNC_REJECTIONS = "braze_sync_rejections"
ENCODE_CHUNK_ROWS = 30_000
API_KEY_ENV = "BRAZE_API_KEY"


def destination(config: Config) -> str:
    """A stable name for the Braze workspace + identifier kind the state belongs to."""
    b = config.braze
    where = (
        b.instance.lower() if b.instance else (urlparse(b.rest_endpoint or "").hostname or "braze")
    )
    return f"{where}-{b.identifier}"


@dataclass
class Wanted:
    side: Side  # lazy, sorted by __id
    segment_booleans: list[str]
    segment_array: str | None
    protected_ids: pl.Series

    @cached_property
    def table(self) -> pl.DataFrame:
        return self.side.frame.collect()


def wanted_state(config: Config, storage: Storage) -> Wanted:
    """Attributes + segment attributes, one row per user: what Braze should hold. Lazy: the
    planner streams it. The Parquet footers say whether memberships list the same users in the
    same rows as the attributes (then they are put side by side without reading ids)."""
    b = config.braze
    attrs = storage.scan_table(ATTRIBUTES)
    footer = storage.footer(storage.table_name(ATTRIBUTES))
    id_cols = identifier_columns(b.identifier)
    cols = id_cols + [ID] + sent_columns(attrs.collect_schema(), b.identifier)
    frame = attrs.select(cols)
    digest, ids = footer.get("ids_digest"), None
    segs = list(config.segments)
    booleans: list[str] = []
    array: str | None = None
    if segs:
        mem = storage.scan_table(MEMBERSHIPS)
        seg_attrs = segment_attributes(mem, b, segs)
        if digest and digest == storage.footer(storage.table_name(MEMBERSHIPS)).get("ids_digest"):
            frame = pl.concat([frame, seg_attrs.drop(ID)], how="horizontal")
        else:
            both = pl.collect_all([attrs.select(ID), mem.select(ID)])
            ids, mem_ids = (f.get_column(ID) for f in both)
            frame = zip_or_join(frame, ids, seg_attrs, mem_ids)
        if b.segment_attributes == "boolean":
            booleans = [c for c in seg_attrs.collect_schema().names() if c != ID]
        else:
            array = b.segment_array_attribute
    non_null = {c: n for c, n in footer.get("non_null", {}).items() if c in cols}
    side = Side(frame, ids, digest, footer.get("rows"), non_null)
    protected = pl.Series(ID, [], dtype=pl.String)
    if storage.table_exists(FIELD_REJECTIONS):
        protected = storage.read_table(FIELD_REJECTIONS).get_column(ID).drop_nulls().unique()
    return Wanted(side, booleans, array, protected)


PLAN_POINTER = "tables/braze_sync_plan.json"
PLANS = "plans"
KEEP_PLANS = 3


def save_plan(storage: Storage, plan: Plan) -> str:
    """Write the plan's rows under a name of their own, then the pointer that names them: a
    reader sees one plan whole, never one plan's rows with another's description."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"{PLANS}/{stamp}-{uuid.uuid4().hex[:12]}.parquet"
    uri = storage.write_parquet(name, plan.table)
    storage.write_json(
        PLAN_POINTER,
        {
            "table": name,
            "state_fingerprint": plan.state_fingerprint,
            "attrs": [[a.name, a.array_ops] for a in plan.attrs],
            "wanted_users": plan.wanted_users,
            "stats": plan.stats,
        },
    )
    for old in storage.list(PLANS)[:-KEEP_PLANS]:
        storage.delete(old)
    return uri


def load_plan(storage: Storage) -> Plan:
    man = storage.read_json(PLAN_POINTER)
    if man is None or "table" not in man:
        raise FileNotFoundError("no braze_sync_plan yet: materialize braze_sync_plan first")
    return Plan(
        table=storage.read_parquet(man["table"]),
        attrs=[AttrSpec(n, bool(arr)) for n, arr in man["attrs"]],
        wanted_users=man["wanted_users"],
        state_fingerprint=man["state_fingerprint"],
        stats=man["stats"],
    )


def make_plan(config: Config, storage: Storage, view: StateView | None = None) -> Plan:
    view = view or SyncState(storage, destination(config)).current()
    w = wanted_state(config, storage)
    plan = plan_delta(
        w.side, view.side(), config.braze, w.segment_booleans, w.segment_array, w.protected_ids
    )
    plan.state_fingerprint = view.fingerprint
    plan.stats["state_version"] = view.version
    plan.stats["pending_checkpoints"] = len(view.pending)
    return plan


def window_rows(config: Config) -> int:
    """Plan rows encoded (and, when sending, recorded as going out) at a time: at most half a
    checkpoint, so what a crash leaves uncertain stays within about one checkpoint."""
    per = config.braze.objects_per_request
    rows = min(ENCODE_CHUNK_ROWS, config.sync.checkpoint_rows // 2)
    return max(per, rows // per * per)  # whole requests: no half-empty batch at a boundary


def iter_requests(
    plan: Plan, config: Config, before_window: Callable[[pl.DataFrame], None] | None = None
) -> Iterator[Request]:
    """The plan's requests, encoded a window at a time so payloads are never all in memory;
    ``before_window`` runs before each window's first request is handed out."""
    b = config.braze
    for chunk in plan.table.iter_slices(window_rows(config)):
        if before_window is not None:
            before_window(chunk)
        objs = object_json(chunk, plan.attrs, b.identifier, b.update_existing_only)
        yield from requests(objs, chunk.get_column(ID), max_objects=b.objects_per_request)


def write_dry_run(plan: Plan, config: Config, path: str | os.PathLike) -> tuple[int, int]:
    """Write the planned request bodies as JSON lines; returns (requests, objects)."""
    n_req = n_obj = 0
    with open(path, "wb") as f:
        for req in iter_requests(plan, config):
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

    @property
    def requests_per_second(self) -> float:
        return self.stats.requests / self.duration if self.duration else 0.0


def run_sync(
    config: Config,
    storage: Storage,
    plan: Plan,
    run_id: str,
    api_key: str | None = None,
    on_progress: Callable[[SendStats], None] | None = None,
) -> SyncReport:
    """Send a plan, holding the destination's lease (one sync at a time per Braze workspace,
    whatever the Dagster instance allows). Before each window of rows goes out an intent is
    recorded; accepted rows are checkpointed every ``sync.checkpoint_rows`` and folded into a new
    state version at the end, also when the run fails. Rows Braze rejects are kept with the
    reason and, not being in the state, sent again by the next sync. A plan computed against
    another state than the one the lease shows is recomputed."""
    start = time.perf_counter()
    state = SyncState(storage, destination(config))
    lease = Lease(storage, f"{state.base}/lease", run_id, ttl=config.sync.lease_seconds)
    waited = lease.acquire(config.sync.lease_wait_seconds)
    try:
        report = _send(config, storage, state, lease, plan, run_id, api_key, on_progress)
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
    api_key: str | None,
    on_progress: Callable[[SendStats], None] | None,
) -> SyncReport:
    failpoint("sync.lease_taken")
    view = state.current()
    replanned = False
    if plan.state_fingerprint != view.fingerprint:
        log.info(
            "the plan was computed against %s, the state is now %s: planning again",
            plan.state_fingerprint,
            view.fingerprint,
        )
        plan = make_plan(config, storage, view)
        replanned = True

    b = config.braze
    client = BrazeClient(
        endpoint_for(b.instance, b.rest_endpoint),
        api_key if api_key is not None else os.environ.get(API_KEY_ENV, ""),
        rate_per_second=b.rate_limit.per_second,
        concurrency=b.concurrency,
        timeout=b.timeout_seconds,
        max_retries=b.max_retries,
        max_wait_seconds=b.max_wait_seconds,
        max_consecutive_failures=b.max_consecutive_failures,
    )
    report = SyncReport(plan=plan, replanned=replanned, stats=client.stats)
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

    def going_out(window: pl.DataFrame) -> None:
        if lease.lost.is_set():
            raise LeaseLost(
                f"this sync lost its lease on {storage.uri(state.base)} (it stalled for more "
                "than sync.lease_seconds and another run took over); it stops sending"
            )
        state.write_intent(window.select([ID] + flags))
        report.intents += 1
        failpoint("sync.window_recorded")

    def on_result(result: BatchResult) -> None:
        buffer.extend(result.accepted)
        rejected.extend(result.rejected)
        if len(buffer) >= config.sync.checkpoint_rows:
            flush()
        if on_progress:
            on_progress(client.stats)

    try:
        try:
            client.send(iter_requests(plan, config, going_out), on_result)
        finally:
            flush()  # whatever Braze accepted is recorded, even when the run stops early
            client.close()
    finally:
        # Fold this run's journal into a version even when it failed: the state stays whole
        # and the next plan starts from it.
        if report.intents:
            report.state_version = state.commit().version
            report.pruned = state.prune(config.sync.keep_state_versions)
        else:
            report.state_version = view.version
        report.rejected = _rejections(rejected, run_id)
        report.retried_from_last_run = _retried(storage, plan)
        storage.write_table(SYNC_REJECTIONS, report.rejected)
    return report


def _rejections(rejected: list[tuple[str, str]], run_id: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            ID: [r[0] for r in rejected],
            "reason": [r[1] for r in rejected],
            "run_id": [run_id] * len(rejected),
        },
        schema={ID: pl.String, "reason": pl.String, "run_id": pl.String},
    ).with_columns(pl.lit(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())).alias("rejected_at"))


def _retried(storage: Storage, plan: Plan) -> int:
    """How many rows Braze rejected last time are in this run's plan again."""
    if not storage.table_exists(SYNC_REJECTIONS):
        return 0
    prev = storage.read_table(SYNC_REJECTIONS).get_column(ID)
    return int(plan.table.get_column(ID).is_in(prev.implode()).sum())
