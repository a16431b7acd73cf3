"""Fixtures that start the real servers the tests need, on 127.0.0.1 and free ports.

Fixtures only: what a test module imports lives in amp_braze_tests/support/."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from amp_braze_tests.support.postgres import PostgresServer
from amp_braze_tests.support.servers import EmulatorHandle, free_port, start_emulator


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


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    """A fresh Braze emulator on a free loopback port, stopped after the test."""
    handle = start_emulator("test-key")
    try:
        yield handle
    finally:
        handle.server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session (127.0.0.1, a free port, user ``amp`` with a
    random password over TCP); tests that need a clean slate make a database each
    (``postgres.create_database(name)``). Stopped and deleted at the end, even after failures."""
    with PostgresServer() as server:
        yield server
