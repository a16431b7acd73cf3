"""The braze_currents group: braze_currents_sensor, braze_currents_events (hourly), engagement_summary."""

import datetime as dt

import dagster as dg
import orjson

from amp_braze.catalogue import CURRENTS_EVENTS, CURRENTS_GROUP, ENGAGEMENT
from amp_braze.config import Config
from amp_braze.currents.cursor import advance, fingerprint, retry_hours
from amp_braze.currents.hours import (
    EVENTS_DIR,
    QUARANTINE,
    current_hour,
    loaded_fingerprint,
    write_load,
)
from amp_braze.currents.listing import list_files, list_hour, lookback_start
from amp_braze.currents.load import load_hour
from amp_braze.currents.rollup import update_summary
from amp_braze.engagement_schema import SUMMARY_DESCRIPTIONS
from amp_braze.metadata import rows_table, table_metadata
from amp_braze.resources import StorageResource, storage_resource
from amp_braze.storage import Storage

HOURS = dg.DynamicPartitionsDefinition(name="braze_currents_hours")
# A load that fails (S3 hiccup, a file replaced mid-read) is tried again by Dagster; an hour whose
# load still failed is requested again by a later sensor tick.
LOAD_RETRIES = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)


class SummaryConfig(dg.Config):
    as_of: str | None = None  # ISO time the 30/90-day windows end at; default: now


LOAD_JOB = "braze_currents_load_job"


def currents_defs(cfg: Config) -> dg.Definitions:
    """Braze Currents: the hourly loads, engagement_summary, the sensor and the load job, with
    the Currents bucket as a resource; nothing when the config has no ``currents``."""
    cur = cfg.currents
    if cur is None:
        return dg.Definitions()
    # Imported here: dagster_aws is a heavy import, and every step process imports this code
    # location, Currents or not.
    from amp_braze.currents.resources import CurrentsBucket

    bucket = CurrentsBucket.of(cur)

    quarantine_check = dg.AssetCheckSpec(
        "no_quarantined_files",
        asset=CURRENTS_EVENTS,
        description="Warns when files of the hour could not be read (corrupt, truncated, not Avro).",
    )

    @dg.asset(
        name=CURRENTS_EVENTS,
        group_name=CURRENTS_GROUP,
        partitions_def=HOURS,
        retry_policy=LOAD_RETRIES,
        kinds={"s3", "avro", "polars"},
        check_specs=[quarantine_check],
        description=f"Every Currents event queued in one UTC hour, from s3://{cur.bucket}/{cur.prefix}: "
        "one Parquet table per event type with every field, plus a long table of the common fields; "
        "deduplicated on id. Reloading an hour replaces it whole (each load writes a folder of its own).",
    )
    def braze_currents_events(
        context: dg.AssetExecutionContext,
        currents: CurrentsBucket,
        storage: StorageResource,
    ) -> dg.MaterializeResult:
        store = storage.get()
        hour = context.partition_key
        client = currents.get_client()
        files = list_hour(client, currents.bucket, currents.prefix, hour)
        load = load_hour(
            files, lambda key: client.get_object(Bucket=currents.bucket, Key=key)["Body"].read()
        )
        written = write_load(
            store,
            hour,
            load.events,
            load.by_type,
            load.quarantined,
            fingerprint=fingerprint(files),
        )
        per_type = {t: df.height for t, df in load.by_type.items()}
        meta = table_metadata(load.events, store.uri(written.events))
        meta |= {
            "files": dg.MetadataValue.int(load.files),
            "events": dg.MetadataValue.int(load.events.height),
            "duplicates_dropped": dg.MetadataValue.int(load.duplicates),
            "quarantined_files": dg.MetadataValue.int(len(load.quarantined)),
            "event_types": dg.MetadataValue.int(len(per_type)),
            "files_read_by_polars": dg.MetadataValue.int(load.reader.get("polars", 0)),
            "files_read_by_fastavro": dg.MetadataValue.int(load.reader.get("fastavro", 0)),
            "events_by_type": rows_table(
                [{"event_type": t, "events": n} for t, n in sorted(per_type.items())]
            ),
        }
        if load.quarantined:
            meta["quarantine"] = rows_table(load.quarantined[:20])
            context.log.warning(
                f"{len(load.quarantined)} file(s) of hour {hour} set aside: {load.quarantined[:3]}"
            )
        return dg.MaterializeResult(
            metadata=meta,
            check_results=[
                dg.AssetCheckResult(
                    check_name="no_quarantined_files",
                    passed=not load.quarantined,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"quarantined_files": dg.MetadataValue.int(len(load.quarantined))},
                    description="; ".join(
                        f"{q['key']}: {q['reason']}" for q in load.quarantined[:5]
                    )
                    or None,
                )
            ],
        )

    @dg.asset(
        name=ENGAGEMENT,
        group_name=CURRENTS_GROUP,
        deps=[braze_currents_events],
        kinds={"polars"},
        description="Per user (external_user_id, else Braze user_id): email sends, deliveries, opens, "
        "clicks, bounces, unsubscribes over 30 and 90 days, last open and click, push opens, purchases "
        "and revenue, last purchase and session. Events count once even if delivered twice.",
    )
    def engagement_summary(
        context: dg.AssetExecutionContext,
        config: SummaryConfig,
        storage: StorageResource,
    ) -> dg.MaterializeResult:
        store = storage.get()
        as_of = dt.datetime.fromisoformat(config.as_of) if config.as_of else dt.datetime.now(dt.UTC)
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=dt.UTC)
        run = update_summary(store, EVENTS_DIR, as_of)
        summary = run.table
        uri = store.write_table(ENGAGEMENT, summary)
        meta = table_metadata(summary, uri, SUMMARY_DESCRIPTIONS) | {
            "hours_loaded": dg.MetadataValue.int(run.hours_loaded),
            "hours_read_for_windows": dg.MetadataValue.int(run.hours_read_for_windows),
            "hours_folded_into_rollup": dg.MetadataValue.int(run.hours_folded),
            "rollup": dg.MetadataValue.text(run.rollup),
            "events_read": dg.MetadataValue.int(run.events_read),
            "as_of": dg.MetadataValue.text(as_of.isoformat()),
            "users_with_email_opens_30d": dg.MetadataValue.int(
                int((summary["email_opens_30d"] > 0).sum())
            ),
        }
        return dg.MaterializeResult(metadata=meta)

    load_job = dg.define_asset_job(
        LOAD_JOB,
        selection=[braze_currents_events],
        description="Loads one queue hour of Braze Currents files (braze_currents_sensor runs it).",
    )

    @dg.sensor(
        name="braze_currents_sensor",
        minimum_interval_seconds=cur.minimum_interval_seconds,
        job=load_job,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Lists s3://{cur.bucket}/{cur.prefix} for Currents files of the last "
        f"{cur.lookback_hours} hours and requests a load of every hour whose files changed.",
    )
    def braze_currents_sensor(
        context: dg.SensorEvaluationContext,
        currents: CurrentsBucket,
        storage: StorageResource,
    ) -> dg.SensorResult:
        store = storage.get()
        now = dt.datetime.now(dt.UTC)
        since = lookback_start(now, currents.lookback_hours)
        files = list_files(currents.get_client(), currents.bucket, currents.prefix, since)
        changes, cursor = advance(files, context.cursor, since)
        known = set(context.instance.get_dynamic_partitions(HOURS.name))
        new_hours = sorted({c.hour for c in changes} - known)
        runs = [
            dg.RunRequest(
                run_key=f"{c.hour}:{c.fingerprint}",
                partition_key=c.hour,
                tags={
                    "amp_braze/currents_files": str(c.files),
                    "amp_braze/late_files": str(not c.new).lower(),
                },
            )
            for c in changes
        ]
        # Hours requested earlier whose load failed for good: ask again (a new run key).
        retries, cursor = retry_hours(
            cursor,
            {c.hour for c in changes},
            loaded=lambda hour: loaded_fingerprint(store, hour),
            failed=lambda hour: _newest_load_failed(context.instance, hour),
        )
        runs += [
            dg.RunRequest(
                run_key=f"{r.hour}:{r.fingerprint}:retry-{r.attempt}",
                partition_key=r.hour,
                tags={"amp_braze/currents_retry": str(r.attempt)},
            )
            for r in retries
        ]
        if retries:
            context.log.warning(
                f"requesting again hours whose load failed: {[r.hour for r in retries]}"
            )
        if changes:
            context.log.info(
                f"{len(files)} files in the window; hours to load: {[c.hour for c in changes]}"
            )
        return dg.SensorResult(
            run_requests=runs,
            cursor=cursor,
            dynamic_partitions_requests=[HOURS.build_add_request(new_hours)] if new_hours else [],
        )

    return dg.Definitions(
        assets=[braze_currents_events, engagement_summary],
        sensors=[braze_currents_sensor],
        jobs=[load_job],
        resources={"currents": bucket, "storage": storage_resource(cfg.storage)},
    )


def _newest_load_failed(instance: dg.DagsterInstance, hour: str) -> bool:
    """Whether the newest run that loaded the hour failed (retries done)."""
    runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": hour}), limit=1)
    return bool(runs) and runs[0].dagster_run.status == dg.DagsterRunStatus.FAILURE


def quarantined(storage: Storage, hour: str) -> list[dict]:
    cur = current_hour(storage, hour)
    return [] if cur is None else orjson.loads(storage.read_bytes(f"{cur.folder}/{QUARANTINE}"))
