"""``amp-braze demo``: the whole loop, offline, on generated data and the real Dagster definitions.

Day one: feeds -> customer_profiles -> braze_customer_attributes -> segment_memberships -> per sync
braze_sync_plan -> braze_sync, into two Braze emulators on free loopback ports (two workspaces: the
whole profile table to "us", a win-back campaign to "eu"). Then Braze "sends
email": Currents files for the demo's own users land in a local S3 (a moto server); the Currents
sensor finds them and the hourly loads and engagement_summary run. Day two: 1% of the customers
spend more; the next sync sends only what changed, engagement attributes and the engaged_30d segment
included. Then a check that each emulator holds exactly what its syncs want.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import dagster as dg
import polars as pl
import requests

from amp_braze.braze.emulator import EmulatorServer, Settings
from amp_braze.catalogue import ALL_SYNCS_JOB
from amp_braze.config import BUNDLED_CONFIG, load_config
from amp_braze.demo.summary import phone_summary, print_summary
from amp_braze.events.verify import compare_events
from amp_braze.profiles.sample_data import SHOP_DATABASE, SHOP_TABLE, generate
from amp_braze.profiles.sample_orders import ORDERS_FILE, add_orders
from amp_braze.storage import Storage
from amp_braze.sync.verify import compare

# Dagster run config that keeps the console to warnings (the demo, tests and benchmarks use it).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DEMO_KEY = "amp-braze-demo-key"
DEMO_KEY_EU = "amp-braze-demo-key-eu"


class Progress:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def step(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {text}", flush=True)


def _run_job(
    defs: dg.Definitions, instance: dg.DagsterInstance, job: str, partition: str | None = None
) -> dict[str, dict]:
    """Run a named job (so the Runs page shows braze_sync_job, not an ad-hoc job); returns each
    materialized asset's metadata."""
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, run_config=QUIET, partition_key=partition, raise_on_error=True
    )
    out = {}
    for ev in result.get_asset_materialization_events():
        md = ev.materialization.metadata
        out[ev.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in md.items()}
    return out


def _day_two(feed: Path, share: float = 0.01) -> int:
    """1% of point-of-sale customers make a big purchase: spend up, timestamp newer."""
    pos = pl.read_csv(feed, infer_schema=False)
    key = "pos_id" if "pos_id" in pos.columns else "customer_id"  # separate systems, or shared key
    ids = pos.get_column(key).unique().sort()
    chosen = ids.gather_every(int(1 / share))
    later = (dt.datetime(2026, 11, 2)).strftime("%Y-%m-%d %H:%M:%S")
    pos = pos.with_columns(
        pl.when(pl.col(key).is_in(chosen.implode()))
        .then((pl.col("lifetime_spend").cast(pl.Float64) + 1200).round(2).cast(pl.String))
        .otherwise(pl.col("lifetime_spend"))
        .alias("lifetime_spend"),
        pl.when(pl.col(key).is_in(chosen.implode()))
        .then(pl.lit(later))
        .otherwise(pl.col("updated_at"))
        .alias("updated_at"),
    )
    pos.write_csv(feed)
    return chosen.len()


def _day_two_shop(database: Path, share: float = 0.01) -> int:
    """1% of the web shop's accounts place an order: the shop's database updates their rows."""
    import duckdb

    with duckdb.connect(str(database)) as con:
        con.execute(
            f"UPDATE {SHOP_TABLE} SET orders_count = orders_count + 1, "
            "online_revenue = round(online_revenue + 80, 2), "
            "last_order_at = TIMESTAMPTZ '2026-11-02 12:00:00+00', "
            "updated_at = TIMESTAMPTZ '2026-11-02 12:00:00+00' "
            f"WHERE CAST(substr(account_id, 2) AS BIGINT) % {int(1 / share)} = 0"
        )
        (n,) = con.execute(
            f"SELECT count(*) FROM {SHOP_TABLE} "
            "WHERE updated_at = TIMESTAMPTZ '2026-11-02 12:00:00+00'"
        ).fetchone()
    return n


def _day_two_orders(data: Path) -> int:
    """The accounts that placed an order on day two (``_day_two_shop``) have it in the shop's
    orders table too."""
    import duckdb

    when = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)
    with duckdb.connect(str(data / SHOP_DATABASE)) as con:
        accounts = pl.from_arrow(
            con.sql(
                f"SELECT DISTINCT account_id, country, updated_at FROM {SHOP_TABLE} "
                "WHERE updated_at = TIMESTAMPTZ '2026-11-02 12:00:00+00'"
            ).to_arrow_table()
        )
    return add_orders(data / ORDERS_FILE, accounts, "account_id", when)


def _send_email_campaign(
    client, bucket: str, prefix: str, users: list[str], now: dt.datetime, seed: int = 11
) -> int:
    """Currents files for a campaign to the demo's users over the last three hours: sends, deliveries,
    opens, clicks, a few bounces and unsubscribes, some purchases, and a duplicate file (Currents is
    at-least-once). Returns the number of files written."""
    import random

    from amp_braze.currents import fixtures
    from amp_braze.currents.keys import hour_of

    rng = random.Random(seed)
    audience = users[::3]
    e = "users.messages.email."
    by_file: dict[tuple[str, str], list[dict]] = {}

    def add(event_type: str, user: str, at: dt.datetime, **extra) -> None:
        by_file.setdefault((event_type, hour_of(at)), []).append(
            fixtures.event(event_type, user, at, rng, **extra)
        )

    for user in audience:
        at = now - dt.timedelta(minutes=rng.randint(5, 170))
        add(e + "Send", user, at)
        r = rng.random()
        if r < 0.03:
            add(e + "Bounce", user, at + dt.timedelta(seconds=20))
            continue
        add(e + "Delivery", user, at + dt.timedelta(seconds=10))
        if r < 0.45:
            add(e + "Open", user, at + dt.timedelta(minutes=3))
            if r < 0.15:
                add(
                    e + "Click",
                    user,
                    at + dt.timedelta(minutes=4),
                    url="https://shop.example.com/sale",
                )
            if r < 0.05:
                add(
                    "users.behaviors.Purchase",
                    user,
                    at + dt.timedelta(minutes=9),
                    price=round(rng.uniform(20, 200), 2),
                )
        elif r > 0.98:
            add(e + "Unsubscribe", user, at + dt.timedelta(minutes=5))
    files = 0
    for (event_type, hour), records in sorted(by_file.items()):
        for part in range(0, len(records), 1000):
            chunk = records[part : part + 1000]
            body = fixtures.avro_bytes(event_type, chunk)
            client.put_object(
                Bucket=bucket,
                Key=fixtures.key_for(prefix, event_type, hour, 1000 + files),
                Body=body,
            )
            files += 1
    # At-least-once delivery: one file arrives twice under another name.
    (event_type, hour), records = next(iter(sorted(by_file.items())))
    dup = fixtures.avro_bytes(event_type, records[:50])
    client.put_object(
        Bucket=bucket, Key=fixtures.key_for(prefix, event_type, hour, 999_999), Body=dup
    )
    return files + 1


def _start_s3() -> tuple[object, str]:
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
    )  # fmt: skip
    return server, url


def run_demo(
    profiles: int = 10_000, workdir: Path = Path(".amp_braze_demo"), keep_running: bool = False
) -> int:
    from amp_braze.currents.assets import HOURS, LOAD_JOB
    from amp_braze.definitions import build_defs
    from amp_braze.storage import s3_client

    progress = Progress()
    workdir = workdir.resolve()
    os.environ["AMP_BRAZE_HOME"] = str(workdir)
    data = workdir / ".amp_braze" / "demo_data"
    progress.step(f"generating sample feeds for {profiles:,} customers in {data}")
    generate(data, customers=profiles, shared_key=False)
    storage_dir = workdir / ".amp_braze" / "storage"
    if storage_dir.exists():  # a fresh emulator holds nothing: start the sync state afresh too
        import shutil

        shutil.rmtree(storage_dir)

    server = EmulatorServer(settings=Settings(api_key=DEMO_KEY)).start()
    server_eu = EmulatorServer(settings=Settings(api_key=DEMO_KEY_EU)).start()
    os.environ["BRAZE_REST_ENDPOINT"] = server.url
    os.environ["BRAZE_API_KEY"] = DEMO_KEY
    os.environ["BRAZE_REST_ENDPOINT_EU"] = server_eu.url
    os.environ["BRAZE_API_KEY_EU"] = DEMO_KEY_EU
    s3_server, s3_url = _start_s3()
    progress.step(
        f"Braze emulators: us on {server.url}, eu on {server_eu.url}; local S3 (moto) on {s3_url}"
    )
    dagster_proc = None
    try:
        config = load_config(BUNDLED_CONFIG)
        assert config.currents is not None
        s3 = s3_client()
        s3.create_bucket(Bucket=config.currents.bucket)
        defs = build_defs(config)
        if keep_running:  # a persistent instance, so the UI shows the demo's runs and metadata
            home = workdir / "dagster_home"
            if home.exists():
                import shutil

                shutil.rmtree(home)
            home.mkdir(parents=True)
            os.environ["DAGSTER_HOME"] = str(home)
            instance = dg.DagsterInstance.get()
        else:
            instance = dg.DagsterInstance.ephemeral()

        progress.step("day one: feeds -> profiles -> attributes -> segments -> plan -> sync")
        day1 = _run_job(defs, instance, ALL_SYNCS_JOB)
        for stream in config.events.values():
            progress.step(f"event stream {stream.stream}: each web order once, by its id")
            day1 |= _run_job(defs, instance, stream.names.job)

        now = dt.datetime.now(dt.UTC)
        users = (
            Storage(config.storage).read_table("braze_customer_attributes")["external_id"].to_list()
        )
        files = _send_email_campaign(s3, config.currents.bucket, config.currents.prefix, users, now)
        progress.step(
            f"Braze Currents wrote {files} Avro files to s3://{config.currents.bucket}/{config.currents.prefix}"
        )
        sensor = defs.resolve_sensor_def("braze_currents_sensor")
        tick = sensor(dg.build_sensor_context(instance=instance, resources=defs.resources))
        for req in tick.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(HOURS.name, list(req.partition_keys))
        hours = sorted(r.partition_key for r in tick.run_requests)
        progress.step(
            f"braze_currents_sensor requested {len(hours)} hourly loads: {', '.join(hours)}"
        )
        loads = {h: _run_job(defs, instance, LOAD_JOB, h)["braze_currents_events"] for h in hours}

        changed = _day_two(data / "pos_customers.csv")
        orders = _day_two_shop(data / SHOP_DATABASE)
        _day_two_orders(data)
        progress.step(
            f"day two: {changed:,} customers spent more in store, {orders:,} web shop accounts "
            "placed an order; engagement flows back; syncing again"
        )
        day2 = _run_job(defs, instance, ALL_SYNCS_JOB)
        for stream in config.events.values():
            day2 |= _run_job(defs, instance, stream.names.job)
        progress.step("comparing each emulator's profiles with what its syncs want")
        checks, phones, streams = {}, {}, {}
        for dest, srv in (("us", server), ("eu", server_eu)):
            users = requests.get(f"{srv.url}/_emulator/users", timeout=60).json()
            stats = requests.get(f"{srv.url}/_emulator/stats", timeout=10).json()
            syncs = [sp for sp in config.syncs.values() if sp.destination == dest]
            checks[dest] = (compare(config, Storage(config.storage), users, syncs), stats)
            phones[dest] = phone_summary(users)
            for stream in config.events.values():
                if stream.destination == dest:
                    streams[stream.stream] = compare_events(
                        config, Storage(config.storage), users, stream
                    )
        print_summary(config, day1, day2, checks, loads, phones, streams)
        if keep_running:
            dagster_proc = _keep_running(
                workdir, {"us": server.url, "eu": server_eu.url}, s3_url, tick.cursor
            )
        equal = all(c.equal for c, _ in checks.values()) and all(e.equal for e in streams.values())
        return 0 if equal else 1
    finally:
        if dagster_proc is not None:
            import signal

            os.killpg(dagster_proc.pid, signal.SIGTERM)
        server.stop()
        server_eu.stop()
        s3_server.stop()


def _keep_running(workdir: Path, braze_urls: dict[str, str], s3_url: str, cursor: str | None):
    """Leave the emulator and S3 up and start the Dagster UI on the same configuration. The
    sensor's cursor is left where the demo's own tick left it, so turning the sensor on in the UI
    loads only hours whose files change from now on."""
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = workdir / "dagster_home"
    home.mkdir(exist_ok=True)
    env = os.environ | {"DAGSTER_HOME": str(home), "AMP_BRAZE_CONFIG": str(BUNDLED_CONFIG)}
    dagster = Path(sys.executable).with_name("dagster")
    if cursor:
        subprocess.run(
            [str(dagster), "sensor", "cursor", "braze_currents_sensor", "--set", cursor,
             "-m", "amp_braze.definitions"],
            cwd=workdir, env=env, check=True, capture_output=True,
        )  # fmt: skip
    proc = subprocess.Popen(
        [str(dagster), "dev", "-m", "amp_braze.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=workdir, env=env, start_new_session=True,
    )  # fmt: skip
    print(
        f"\nDagster UI:      http://127.0.0.1:{port}  (asset graph: /asset-groups, lineage: "
        f"{LINEAGE_PATH})"
    )
    for dest, url in braze_urls.items():
        key = DEMO_KEY if dest == "us" else DEMO_KEY_EU
        print(f"Braze emulator {dest}: {url}  (key {key}; profiles at {url}/_emulator/users)")
    print(f"Local S3 (moto): {s3_url}  (bucket amp-braze-demo-currents)")
    print("Everything stays up until Ctrl-C.")
    try:
        while proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    return proc


# The lineage of the last sync asset, every depth upstream: the whole graph at once.
LINEAGE_PATH = "/assets/profiles_us/braze_sync?view=lineage&lineageScope=upstream&lineageDepth=10"
