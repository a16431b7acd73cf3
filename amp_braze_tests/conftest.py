"""Fixtures that start the real servers the tests need, on 127.0.0.1 and free ports."""

from __future__ import annotations

import os
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLES = REPO.parent / "shared" / "braze-currents-samples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto S3 server for the whole session; AWS_* variables point every client at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _AWS_VARS}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_AWS_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


@pytest.fixture
def s3_bucket(moto_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh bucket on the moto server, named after the test."""
    import re

    from amp_braze.storage import s3_client

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + "-b"
    client = s3_client()
    client.create_bucket(Bucket=name)
    return name


def assets_named(defs, *names: str) -> list:
    """The assets definitions that hold any of these keys (a multi-asset holds several)."""
    return [a for a in defs.assets if any(k.to_user_string() in names for k in a.keys)]


def write_config(folder: Path, body: str, sql: str | None = None) -> Path:
    """Write amp_braze.yaml (and the profile SQL it names) into a folder; returns the YAML's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profile.sql").write_text(
        sql or "SELECT customer_id AS external_id FROM customer_profiles"
    )
    path = folder / "amp_braze.yaml"
    path.write_text(textwrap.dedent(body))
    return path


MINIMAL = """
storage: ./store
sources:
  pos:
    path: pos.csv
    customer_key: customer_id
    updated_at: updated_at
profile_sql: profile.sql
braze:
  rest_endpoint: http://127.0.0.1:9
"""


class EmulatorHandle:
    """A running emulator plus helpers to talk to it as a client would."""

    def __init__(self, server):
        import requests

        self.server = server
        self.url = server.url
        self.key = server.emulator.settings.api_key
        self.http = requests.Session()

    def track(self, body, key: str | None = None, content_type: str = "application/json"):
        import orjson

        data = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {"Authorization": f"Bearer {key or self.key}", "Content-Type": content_type}
        return self.http.post(f"{self.url}/users/track", data=data, headers=headers)

    def export(self, body):
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        return self.http.post(f"{self.url}/users/export/ids", json=body, headers=headers)

    def users(self) -> dict[str, dict]:
        return {
            u.get("external_id") or u["braze_id"]: u
            for u in self.http.get(f"{self.url}/_emulator/users").json()
        }

    def stats(self) -> dict:
        return self.http.get(f"{self.url}/_emulator/stats").json()

    def faults(self, **kw) -> dict:
        return self.http.post(f"{self.url}/_emulator/faults", json=kw).json()

    def configure(self, **kw) -> dict:
        return self.http.post(f"{self.url}/_emulator/config", json=kw).json()


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    """A fresh Braze emulator on a free loopback port, stopped after the test."""
    from amp_braze.braze.emulator import EmulatorServer, Settings

    server = EmulatorServer(settings=Settings(api_key="test-key")).start()
    try:
        yield EmulatorHandle(server)
    finally:
        server.stop()
