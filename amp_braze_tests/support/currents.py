"""A Currents setup for a test: a configuration whose Currents bucket is on the moto server,
Avro files put where Braze puts them, the sensor ticked and hours loaded as Dagster would."""

from __future__ import annotations

import datetime as dt
import random
import textwrap
from pathlib import Path

import dagster as dg
import polars as pl

from amp_braze.config import load_config
from amp_braze.currents import fixtures
from amp_braze.currents.keys import hour_of
from amp_braze.definitions import build_defs
from amp_braze.demo.run import QUIET
from amp_braze.storage import Storage, s3_client
from amp_braze_tests.support.assets import assets_named
from amp_braze_tests.support.configs import write_config
from amp_braze_tests.support.metadata import plain

NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
H = [hour_of(NOW - dt.timedelta(hours=k)) for k in range(6)]  # H[0] this hour, H[1] an hour ago...


class Currents:
    def __init__(self, folder: Path, bucket: str):
        body = textwrap.dedent(
            f"""
            storage: ./store
            sources:
              crm: {{path: crm.csv, customer_key: id}}
            profile_sql: profile.sql
            braze: {{rest_endpoint: "http://127.0.0.1:9"}}
            currents: {{bucket: {bucket}, prefix: braze/currents, lookback_hours: 24}}
            """
        )
        self.config = load_config(write_config(folder, body))
        self.bucket, self.prefix = bucket, "braze/currents"
        self.defs = build_defs(self.config)
        self.instance = dg.DagsterInstance.ephemeral()
        self.storage = Storage(self.config.storage)
        self.s3 = s3_client()
        self.offset = 0
        self.cursor: str | None = None
        self.rng = random.Random(5)

    def put(self, event_type: str, hour: str, records: list[dict], layout: str = "new", key: str | None = None,
            data: bytes | None = None) -> str:  # fmt: skip
        self.offset += 1
        key = key or fixtures.key_for(self.prefix, event_type, hour, self.offset, layout)
        body = data if data is not None else fixtures.avro_bytes(event_type, records)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return key

    def events(
        self, event_type: str, n: int, user: str = "u1", at: dt.datetime | None = None
    ) -> list[dict]:
        return [fixtures.event(event_type, user, at or NOW, self.rng) for _ in range(n)]

    def tick(self) -> dg.SensorResult:
        sensor = self.defs.resolve_sensor_def("braze_currents_sensor")
        # As Dagster's daemon does: only the resources the sensor names are built.
        resources = {k: self.defs.resources[k] for k in sensor.required_resource_keys}
        ctx = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=resources
        )
        result = sensor(ctx)
        self.cursor = result.cursor
        for req in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        return result

    def load(self, hour: str) -> dict:
        assets = assets_named(self.defs, "braze_currents_events")
        result = dg.materialize(
            assets,
            instance=self.instance,
            partition_key=hour,
            resources=self.defs.resources,
            run_config=QUIET,
        )
        ev = result.get_asset_materialization_events()[0]
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        meta = plain(ev.materialization.metadata)
        meta["_check_passed"] = checks["no_quarantined_files"].passed
        return meta

    def load_isolated(self, hour: str) -> None:
        """A load as a second deployment would run it: its own instance (threads may race)."""
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("braze_currents_hours", [hour])
        dg.materialize(
            assets_named(self.defs, "braze_currents_events"),
            instance=instance, partition_key=hour, resources=self.defs.resources,
            run_config=QUIET,
        )  # fmt: skip

    def load_without_retries(self, hour: str) -> dg.ExecuteInProcessResult:
        """A load in the test's instance with Dagster's retries off (a load that fails for good)."""
        return dg.materialize(
            assets_named(self.defs, "braze_currents_events"),
            instance=self.instance, partition_key=hour, resources=self.defs.resources,
            run_config={**QUIET, "execution": {"config": {"retries": {"disabled": {}}}}},
            raise_on_error=False,
        )  # fmt: skip

    def summary_isolated(self, as_of: dt.datetime) -> None:
        dg.materialize(
            assets_named(self.defs, "engagement_summary"),
            instance=dg.DagsterInstance.ephemeral(), resources=self.defs.resources,
            run_config={**QUIET, "ops": {"engagement_summary": {"config": {"as_of": as_of.isoformat()}}}},
        )  # fmt: skip

    def summary(self, as_of: dt.datetime) -> pl.DataFrame:
        return self.summary_and_metadata(as_of)[0]

    def summary_and_metadata(self, as_of: dt.datetime) -> tuple[pl.DataFrame, dict]:
        assets = assets_named(self.defs, "engagement_summary")
        result = dg.materialize(
            assets, instance=self.instance, resources=self.defs.resources,
            run_config={**QUIET, "ops": {"engagement_summary": {"config": {"as_of": as_of.isoformat()}}}},
        )  # fmt: skip
        ev = result.get_asset_materialization_events()[0]
        meta = plain(ev.materialization.metadata)
        return self.storage.read_table("engagement_summary"), meta

    def load_any_hour(self, hour: str) -> dict:
        """Load an hour the sensor's lookback would not reach (history)."""
        self.instance.add_dynamic_partitions("braze_currents_hours", [hour])
        return self.load(hour)
