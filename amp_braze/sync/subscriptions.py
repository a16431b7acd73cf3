"""Subscription groups of a sync: their states are managed values of the sync state and columns of
the plan like attributes (``plan_columns.subscription_column``: one column per group id, holding
``subscribed`` / ``unsubscribed``, with its ``__c_`` flag), but they never go to /users/track: a
sync sends the flagged ones with ``/v2/subscription/status/set``, one group and state per request,
``MAX_SUBSCRIPTION_IDS`` external ids at most, after the attribute requests (so a new user's
profile exists first), and checkpoints what Braze accepted as it does attributes. They cost no
data points."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson
import polars as pl

from amp_braze.braze.event_rules import GROUP_STATES, MAX_SUBSCRIPTION_IDS
from amp_braze.braze.field_rules import held_column
from amp_braze.braze.identifiers import ID
from amp_braze.braze.plan_columns import (
    NEW,
    SUBSCRIPTION,
    AttrSpec,
    flag,
    group_of,
    is_subscription,
)

if TYPE_CHECKING:
    from amp_braze.braze.client import BatchResult, BrazeClient

SUBSCRIBED, UNSUBSCRIBED = GROUP_STATES
NOT_ATTRIBUTES = ("__", SUBSCRIPTION)  # state columns that are no attribute


def track_rows(attrs: list[AttrSpec]) -> pl.Expr:
    """The plan rows with something for /users/track: an attribute to send, or a user new to
    Braze (an identifier alone makes the profile a subscription request needs)."""
    return pl.any_horizontal([pl.col(NEW), *(pl.col(flag(a.name)) for a in attrs)])


def split(specs: list[AttrSpec]) -> tuple[list[AttrSpec], list[str]]:
    """A plan's managed values: (the attributes for /users/track, the subscription columns)."""
    return [a for a in specs if not is_subscription(a.name)], [
        a.name for a in specs if is_subscription(a.name)
    ]


def removed_value(
    a: str, dtype: pl.DataType, state: pl.Schema, mark: str, marked: list[str]
) -> pl.Expr:
    """A managed value for a user no longer wanted, with ``on_removed_user: unset``: null (unset)
    for an attribute; for a subscription group ``unsubscribed`` where Braze holds, or may hold
    (``mark``: the state's uncertainty column, if ``a`` is ``marked``), a state from this sync.
    A group the sync never set for the user is not its to change."""
    if not is_subscription(a):
        return pl.lit(None, dtype).alias(a)
    ours = pl.col(a).is_not_null() if a in state else pl.lit(False)
    if a in marked:
        ours = ours | pl.col(mark).fill_null(False)
    return pl.when(ours).then(pl.lit(UNSUBSCRIBED)).otherwise(None).alias(a)


def stats(table: pl.DataFrame, subs: list[str]) -> dict:
    """Per group id, the users to subscribe and to unsubscribe, and the requests they take."""
    counts = [
        table.lazy().select(
            [(pl.col(flag(s)) & (pl.col(s) == st)).sum().alias(st) for st in GROUP_STATES]
        )
        for s in subs
    ]
    changes: dict[str, dict[str, int]] = {}
    for s, row in zip(subs, pl.collect_all(counts) if counts else [], strict=True):
        changes[group_of(s)] = {st: int(row.item(0, st)) for st in GROUP_STATES}
    requests = sum(-(-n // MAX_SUBSCRIPTION_IDS) for c in changes.values() for n in c.values())
    return {"subscription_changes": changes, "subscription_requests": requests}


def windows(
    table: pl.DataFrame, subs: list[str], rows: int
) -> Iterator[tuple[str, str, pl.Series]]:
    """(group column, state, ids): every flagged state, ``rows`` ids at most at a time (a
    multiple of ``MAX_SUBSCRIPTION_IDS``: whole requests)."""
    rows = max(MAX_SUBSCRIPTION_IDS, rows // MAX_SUBSCRIPTION_IDS * MAX_SUBSCRIPTION_IDS)
    for s in subs:
        flagged = table.filter(pl.col(flag(s))).select(ID, s)
        for state in GROUP_STATES:
            ids = flagged.filter(pl.col(s) == state).get_column(ID)
            for a in range(0, ids.len(), rows):
                yield s, state, ids.slice(a, rows)


def chunks(ids: pl.Series) -> Iterator[list[str]]:
    """A window's ids, a request's worth at a time."""
    for a in range(0, ids.len(), MAX_SUBSCRIPTION_IDS):
        yield ids.slice(a, MAX_SUBSCRIPTION_IDS).to_list()


def request_body(column: str, state: str, ids: list[str]) -> dict:
    """One /v2/subscription/status/set body: one group object with its external ids."""
    group = {"subscription_group_id": group_of(column), "subscription_state": state}
    return {"subscription_groups": [group | {"external_ids": ids}]}


def write_requests(
    table: pl.DataFrame, subs: list[str], path: str | os.PathLike
) -> tuple[int, int]:
    """The dry run of the groups: every request body as a JSON line; returns (requests, ids)."""
    n_req = n_ids = 0
    with open(path, "wb") as f:
        for s, state, ids in windows(table, subs, 50_000):
            for chunk in chunks(ids):
                f.write(orjson.dumps(request_body(s, state, chunk)) + b"\n")
                n_req, n_ids = n_req + 1, n_ids + len(chunk)
    return n_req, n_ids


def rejections(wanted: pl.LazyFrame, subs: dict[str, str]) -> pl.DataFrame:
    """Values of the groups' columns that are no state (``normalize.group_state``): ``__id``,
    ``column``, ``value``, ``reason``."""
    held = {held_column(sc): c for c, sc in subs.items()}
    bad = pl.any_horizontal([pl.col(h).is_not_null() & (pl.col(h) != "") for h in held])
    rows = wanted.filter(bad).select(ID, *held).collect(engine="streaming")
    long = rows.unpivot(index=ID, variable_name="column", value_name="value")
    long = long.filter(pl.col("value").is_not_null() & (pl.col("value") != ""))
    return long.with_columns(
        pl.col("column").replace_strict(held, return_dtype=pl.String),
    ).with_columns(
        pl.format(
            "subscription_groups.{}: {} is neither subscribed, unsubscribed nor a boolean",
            pl.col("column"),
            pl.col("value"),
        ).alias("reason")
    )


@dataclass
class SubscriptionReport:
    """What a sync sent of its subscription groups, and what Braze did with it."""

    accepted: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> state -> users
    requests: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (__id, reason)
    failed: int = 0

    def by_group(self, subs: list[str]) -> dict[str, dict[str, int]]:
        """Users Braze took per group id and state, every group of the plan (zeros included)."""
        zero = dict.fromkeys(GROUP_STATES, 0)
        return {group_of(s): self.accepted.get(group_of(s), zero) for s in subs}


def send(
    table: pl.DataFrame,
    subs: list[str],
    client: BrazeClient,
    window: int,
    going_out: Callable[[pl.DataFrame], None],
    accepted: Callable[[pl.DataFrame], None],
    report: SubscriptionReport,
) -> None:
    """Send the flagged states, a window of ids at a time: ``going_out`` records the window's ids
    and flag before it is sent (an intent), ``accepted`` the ids and states Braze took after (a
    checkpoint), also when a request raises mid-window."""
    pool = ThreadPoolExecutor(max_workers=client.concurrency, thread_name_prefix="braze-subs")
    try:
        for s, state, ids in windows(table, subs, window):
            _send_window(pool, client, s, state, ids, going_out, accepted, report)
    finally:
        pool.shutdown(wait=True)


def _send_window(pool, client, s, state, ids, going_out, accepted, report) -> None:
    """One window's requests, ``client.concurrency`` at a time (states are idempotent: a
    request whose answer is lost in a failure is sent again by the next sync)."""
    going_out(ids.to_frame().with_columns(pl.lit(True).alias(flag(s))))
    took: list[str] = []

    def post(chunk: list[str]) -> BatchResult:
        return client.post_subscriptions(request_body(s, state, chunk), chunk)

    try:
        for result in pool.map(post, list(chunks(ids))):
            report.requests += 1
            took += result.accepted
            report.rejected += result.rejected
            report.failed += len(result.failed)
            client.stats.add(failed=len(result.failed))  # the sync fails, as for attributes
    finally:
        if took:
            accepted(
                pl.DataFrame({ID: took}, schema={ID: pl.String}).with_columns(
                    pl.lit(state).alias(s), pl.lit(True).alias(flag(s))
                )
            )
            counts = report.accepted.setdefault(group_of(s), dict.fromkeys(GROUP_STATES, 0))
            counts[state] += len(took)
