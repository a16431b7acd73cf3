"""Running one event stream: its query, the check against its ledger, and sending what Braze has
never been sent, holding its destination's lease (the one its syncs hold), recording each
window as in flight before it goes out and each accepted id as Braze confirms it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from amp_braze.braze.client import BatchResult, SendStats
from amp_braze.braze.payload import Request, requests
from amp_braze.config import Config
from amp_braze.config.events import EventStream
from amp_braze.events import ledger as lg
from amp_braze.events.prepare import prepare, rejections
from amp_braze.events.types import OBJ, PART_SEPARATOR, POINTS, SENT_ID
from amp_braze.metadata import Laps
from amp_braze.profiles.sql import base_tables, run_sql
from amp_braze.storage import Storage
from amp_braze.sync.lease import Lease, LeaseLost
from amp_braze.sync.run import Workspace

WINDOW_REQUESTS_PER_WORKER = 4  # a window: this many requests per concurrent worker


@dataclass
class EventReport:
    rows: int = 0
    new: int = 0
    already_sent: int = 0
    changed_after_send: int = 0
    sent: int = 0  # objects Braze accepted
    data_points: int = 0
    braze_rejected: int = 0
    uncertain_now: int = 0  # this run's objects that got no answer
    resent_uncertain: int = 0
    uncertain: pl.DataFrame = field(default_factory=pl.DataFrame)  # every id in doubt
    rejected: pl.DataFrame = field(default_factory=pl.DataFrame)
    intents: int = 0
    ledger_version: int = 0
    ledger_ids: int = 0
    lease_wait_seconds: float = 0.0
    duration: float = 0.0
    stats: SendStats = field(default_factory=SendStats)
    seconds: dict[str, float] = field(default_factory=dict)


def windows(rows: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    """Windows of about ``size`` rows that never part the objects of one row (a split purchase's
    parts are in flight together, so a crash leaves all of them sent or in doubt)."""
    if rows.height <= size:
        if rows.height:
            yield rows
        return
    rows = rows.with_columns((pl.int_range(pl.len()) // size).alias("__w"))
    rows = rows.with_columns(pl.col("__w").first().over("event_id"))
    for part in rows.partition_by("__w", maintain_order=True):
        yield part.drop("__w")


def stream_rows(config: Config, storage: Storage, stream: EventStream) -> pl.DataFrame:
    sql = stream.sql.read_text()
    return run_sql(sql, base_tables(config, storage, [sql]), f"events.{stream.stream}.sql")


def run_stream(
    config: Config,
    storage: Storage,
    stream: EventStream,
    run_id: str,
    workspace: Workspace,
    now: datetime | None = None,
) -> EventReport:
    """Send a stream's rows Braze has not been sent; see the module and ``ledger``."""
    start = time.perf_counter()
    lap = Laps()
    now = now or datetime.now(UTC)
    df = stream_rows(config, storage, stream)
    lap("query")
    lease = Lease(storage, stream.names.lease, run_id, ttl=config.sync.lease_seconds)
    waited = lease.acquire(config.sync.lease_wait_seconds)
    try:
        report = _send(config, storage, stream, df, now, lease, run_id, workspace, lap)
    finally:
        lease.release()
    report.lease_wait_seconds = waited
    report.duration = time.perf_counter() - start
    report.seconds = lap.seconds
    return report


def _send(config, storage, stream, df, now, lease: Lease, run_id, workspace, lap):
    dest = config.destination_of(stream)
    ledger = lg.Ledger(storage, stream.names.ledger)
    view = ledger.current()  # under the lease: what a crashed run left in flight is uncertain
    prepared = prepare(df, stream, dest, now, view)
    lap("ledger check and validation")
    report = EventReport(
        rows=prepared.rows,
        new=prepared.new,
        already_sent=prepared.already_sent,
        changed_after_send=prepared.changed_after_send,
        resent_uncertain=prepared.uncertain.height if stream.resend_uncertain else 0,
    )
    to_send = prepared.ready
    client = workspace.client(start_at=lease.next_request_at, retry_unanswered=False)
    report.stats = client.stats
    per = dest.objects_per_request
    window = per * dest.concurrency * WINDOW_REQUESTS_PER_WORKER
    accepted: list[str] = []
    buffer: list[str] = []
    braze_rejected: list[tuple[str, str]] = []
    failed: list[str] = []
    unsent: list[str] = []
    intended: list[pl.Series] = []
    handed: list[str] = []

    def flush() -> None:
        if buffer:
            ledger.write_accepted(buffer)
            accepted.extend(buffer)
            buffer.clear()

    def out() -> Iterator[Request]:
        for chunk in windows(to_send, window):
            if lease.lost.is_set():
                raise LeaseLost(
                    f"event stream {stream.stream!r} lost its destination's lease (it stalled "
                    "for more than sync.lease_seconds); it stops sending"
                )
            ledger.write_intent(chunk.get_column(SENT_ID), chunk.get_column("__hash"))
            report.intents += 1
            intended.append(chunk.get_column(SENT_ID))
            for req in requests(chunk.get_column(OBJ), chunk.get_column(SENT_ID), per,
                                array=prepared.array):  # fmt: skip
                handed.extend(req.ids)
                yield req

    def on_result(r: BatchResult) -> None:
        buffer.extend(r.accepted)
        braze_rejected.extend(r.rejected)
        failed.extend(r.failed)
        unsent.extend(r.unsent)
        if len(buffer) >= window:
            flush()

    try:
        try:
            client.send(out(), on_result)
        finally:
            flush()
            lease.next_request_at = client.next_request_at()
            client.close()
            lap("send")
    finally:
        if intended:
            # What never left (the run stopped first) and what Braze refused is not in Braze;
            # what got no answer may be.
            every = pl.concat(intended)
            never = every.filter(~every.is_in(pl.Series(handed, dtype=pl.String).implode()))
            refused = [i for i, _ in braze_rejected]
            ledger.write_settled([*refused, *unsent, *never.to_list()], failed)
        if intended or view.pending:  # a crashed run's entries are folded in too
            view = ledger.commit()
            ledger.prune()
            lap("commit ledger")
        report.ledger_version = view.version
        report.ledger_ids = view.frame.select(pl.len()).collect().item()
        doubt = (
            view.frame.filter(pl.col(lg.STATUS) == lg.UNCERTAIN)
            .select(pl.col(lg.EID).alias("sent_as"))
            .collect()
        )
        report.uncertain = doubt.with_columns(
            pl.col("sent_as").str.replace(f"{PART_SEPARATOR}[0-9]+$", "").alias("event_id")
        ).join(prepared.uncertain, on="event_id", how="left")
        report.sent = len(accepted)
        report.uncertain_now = len(failed)
        report.braze_rejected = len(braze_rejected)
        if accepted:
            mask = pl.col(SENT_ID).is_in(pl.Series(accepted, dtype=pl.String).implode())
            report.data_points = int(to_send.filter(mask).get_column(POINTS).sum())
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        report.rejected = rejections(prepared.rejected, braze_rejected, prepared.ready, run_id,
                                     stamp)  # fmt: skip
        storage.write_table(stream.names.rejections, report.rejected)
    return report
