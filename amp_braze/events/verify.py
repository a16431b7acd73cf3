"""Whether a Braze workspace (the emulator's ``/_emulator/users``) holds a stream's events: per
user, as many as its ledger says Braze accepted (plus at most its uncertain ones). The demo and
the tests end with it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from amp_braze.braze import event_rules as er
from amp_braze.braze.identifiers import ID
from amp_braze.config import Config
from amp_braze.config.events import EventStream
from amp_braze.events import ledger as lg
from amp_braze.events.prepare import prepare
from amp_braze.events.send import stream_rows
from amp_braze.events.types import SENT_ID
from amp_braze.storage import Storage


@dataclass
class EventCheck:
    stream: str
    sent: int  # objects the ledger says Braze accepted, for rows the query still returns
    found: int  # objects of the stream's kind Braze holds for those users
    users_differing: int
    uncertain: int

    @property
    def equal(self) -> bool:
        return self.users_differing == 0


def _held(users: list[dict], stream: EventStream, names: pl.Series) -> pl.DataFrame:
    """Per external id, the objects of the stream's kind Braze holds (a purchase stream: every
    purchase object, so one purchase stream per workspace is what this can check)."""
    ids, counts = [], []
    wanted = set(names.drop_nulls().unique().to_list())
    for u in users:
        if stream.type == er.PURCHASE:
            n = len(u.get("purchase_objects") or [])
        else:
            n = sum(1 for o in u.get("event_objects") or [] if o.get("name") in wanted)
        ids.append(u.get("external_id"))
        counts.append(n)
    return pl.DataFrame({ID: ids, "found": counts}, schema={ID: pl.String, "found": pl.Int64})


def compare_events(
    config: Config, storage: Storage, users: list[dict], stream: EventStream
) -> EventCheck:
    """``users``: the profiles as ``/_emulator/users`` lists them."""
    df = stream_rows(config, storage, stream)
    ready = prepare(df, stream, config.destination_of(stream), datetime.now(UTC)).ready
    held = lg.Ledger(storage, stream.names.ledger).current().frame.collect()
    j = ready.join(held, left_on=SENT_ID, right_on=lg.EID, how="inner")
    per_user = j.group_by(ID).agg(
        (pl.col(lg.STATUS) == lg.SENT).sum().alias("sent"),
        (pl.col(lg.STATUS) == lg.UNCERTAIN).sum().alias("doubt"),
    )
    if stream.type == er.CUSTOM:
        names = pl.Series([stream.name]) if stream.name else df.get_column("name").cast(pl.String)
    else:
        names = pl.Series([stream.type])
    both = per_user.join(_held(users, stream, names), on=ID, how="left").with_columns(
        pl.col("found").fill_null(0)
    )
    off = both.filter(
        (pl.col("found") < pl.col("sent")) | (pl.col("found") > pl.col("sent") + pl.col("doubt"))
    )
    return EventCheck(
        stream=stream.stream,
        sent=int(both["sent"].sum()),
        found=int(both["found"].sum()),
        users_differing=off.height,
        uncertain=int(both["doubt"].sum()),
    )
