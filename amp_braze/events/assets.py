"""Per event stream: ``<stream>/braze_events`` (sends the rows Braze has never been sent) and
``<stream>/braze_events_rejections``, in the stream's group, with its job and schedule."""

import dagster as dg

from amp_braze.braze.client import AuthError, BrazeError
from amp_braze.catalogue import EVENT_REJECTIONS, EVENTS, SOURCES
from amp_braze.config import Config
from amp_braze.config.events import EventStream
from amp_braze.events.ledger import LedgerMovedError
from amp_braze.events.send import EventReport, run_stream
from amp_braze.events.shape import EventsError
from amp_braze.metadata import rows_table, stage_seconds, table_metadata
from amp_braze.profiles.sql import SqlError, sql_upstream, table_assets
from amp_braze.sync.jobs import stopped_schedule
from amp_braze.sync.lease import LeaseLost, LeaseTimeout

UNCERTAIN_SHOWN = 50  # ids listed in the metadata table (all of them are in the ledger)


def _key(stream: EventStream, name: str) -> dg.AssetKey:
    return dg.AssetKey(stream.names.key(name))


def _metadata(report: EventReport, stream: EventStream) -> dict:
    st = report.stats
    doubt = report.uncertain.head(UNCERTAIN_SHOWN)
    return {
        "rows": dg.MetadataValue.int(report.rows),
        "new_events": dg.MetadataValue.int(report.new),
        "events_sent": dg.MetadataValue.int(report.sent),
        "already_sent": dg.MetadataValue.int(report.already_sent),
        "changed_after_send": dg.MetadataValue.int(report.changed_after_send),
        "uncertain_events": dg.MetadataValue.int(report.uncertain.height),
        "uncertain_this_run": dg.MetadataValue.int(report.uncertain_now),
        "resent_uncertain": dg.MetadataValue.int(report.resent_uncertain),
        "rejected_rows": dg.MetadataValue.int(report.rejected.height),
        "braze_rejected": dg.MetadataValue.int(report.braze_rejected),
        "data_points": dg.MetadataValue.int(report.data_points),
        "requests": dg.MetadataValue.int(st.requests),
        "rate_limited_429s": dg.MetadataValue.int(st.rate_limited),
        "ledger_version": dg.MetadataValue.int(report.ledger_version),
        "ledger_events": dg.MetadataValue.int(report.ledger_ids),
        "intents": dg.MetadataValue.int(report.intents),
        "lease_wait_seconds": dg.MetadataValue.float(round(report.lease_wait_seconds, 3)),
        "duration_seconds": dg.MetadataValue.float(round(report.duration, 3)),
        "seconds": stage_seconds(report.seconds),
        "uncertain_ids": rows_table(
            [
                {
                    "event_id": r["event_id"] or r["sent_as"],
                    "sent_as": r["sent_as"],
                    "identifier": r["__id"] or "",
                    "time": str(r["__time"] or ""),
                }
                for r in doubt.to_dicts()
            ]
        ),
        "resend_uncertain": dg.MetadataValue.bool(stream.resend_uncertain),
    }


def stream_assets(cfg: Config, stream: EventStream) -> dg.AssetsDefinition:
    names = stream.names
    upstream = [dg.AssetKey(k) for k in sql_upstream(stream.sql.read_text(), table_assets(cfg))]
    what = f"event stream {stream.stream!r} ({stream.type}) to destination {stream.destination!r}"

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                _key(stream, EVENTS),
                group_name=names.group,
                deps=upstream,
                kinds={"braze"},
                description=f"Sends the rows of {what} that Braze has never been sent, each once "
                "by its event_id (the stream's ledger records every id Braze accepted).",
            ),
            dg.AssetSpec(
                _key(stream, EVENT_REJECTIONS),
                group_name=names.group,
                deps=upstream,
                kinds={"polars"},
                description="Rows of the stream's query set aside by the rule they break, and "
                "objects Braze refused; sent by a later run once their row is fixed.",
            ),
        ],
        name=names.step,
        pool=names.pool,
        required_resource_keys={"storage", names.workspace},
    )
    def braze_events(context: dg.AssetExecutionContext):
        store = context.resources.storage.get()
        try:
            braze = getattr(context.resources, names.workspace)
            report = run_stream(cfg, store, stream, context.run.run_id, braze)
        except AuthError as e:
            raise dg.Failure(description=str(e), allow_retries=False) from None
        except (EventsError, SqlError) as e:
            raise dg.Failure(description=str(e), allow_retries=False) from None
        except (BrazeError, LeaseTimeout, LeaseLost, LedgerMovedError) as e:
            raise dg.Failure(description=str(e)) from None
        meta = _metadata(report, stream)
        context.log.info(
            f"{stream.stream}: {report.rows:,} rows, {report.new:,} new, sent {report.sent:,} "
            f"({report.data_points:,} data points) in {report.stats.requests:,} requests; "
            f"{report.already_sent:,} already sent, {report.uncertain.height:,} uncertain, "
            f"{report.rejected.height:,} rejected"
        )
        uri = store.uri(store.table_name(names.rejections))
        yield dg.MaterializeResult(
            asset_key=_key(stream, EVENT_REJECTIONS),
            metadata=table_metadata(report.rejected, uri)
            | {"sample": rows_table(report.rejected.head(20).to_dicts())},
        )
        if report.stats.failed:
            raise dg.Failure(
                description=f"{report.stats.failed:,} events got no answer from Braze; they are "
                "uncertain (see uncertain_ids) and not sent again unless resend_uncertain",
                metadata=meta,
            )
        yield dg.MaterializeResult(asset_key=_key(stream, EVENTS), metadata=meta)

    return braze_events


def stream_job(cfg: Config, stream: EventStream) -> "dg.UnresolvedAssetJobDefinition":
    """The stream's assets and the feeds its query reads: a stream runs often (every half hour,
    say) and reads the feeds it sends from fresh; the tables syncs build (customer_profiles,
    identity_clusters) are read as their last run left them."""
    keys = [_key(stream, EVENTS), _key(stream, EVENT_REJECTIONS)]
    feeds = [
        dg.AssetKey(k)
        for k in sql_upstream(stream.sql.read_text(), table_assets(cfg))
        if k[0] == SOURCES
    ]
    selection = dg.AssetSelection.assets(*keys, *feeds)
    return dg.define_asset_job(
        stream.names.job,
        selection=selection,
        description=f"Sends event stream {stream.stream!r}: the rows Braze has never been sent, "
        "after reading the tables its query reads.",
    )


def stream_schedule(stream: EventStream, job) -> dg.ScheduleDefinition:
    return stopped_schedule(stream.names.schedule, job, stream.schedule, stream.timezone)
