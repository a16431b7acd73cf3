"""The Braze client: its retry and pacing rules, endpoints, keys, and results under load."""

from __future__ import annotations

import time

import orjson
import pytest
import urllib3

from amp_braze.braze.client import AuthError, BrazeClient, BrazeError
from amp_braze.braze.instances import INSTANCES, endpoint_for
from amp_braze.braze.retry import Pacer, retry_after_seconds


def test_retry_after_headers():
    h = urllib3.HTTPHeaderDict
    assert retry_after_seconds(h({"X-Ratelimit-Retry-After": "7"})) == 7
    assert retry_after_seconds(h({"x-ratelimit-reset": "2"})) == 2
    assert retry_after_seconds(h({"X-RateLimit-Reset": "1800000010"}), now=1800000000) == 10
    assert retry_after_seconds(h({})) is None


def test_pacer_keeps_the_rate():
    pacer = Pacer(200)
    start = time.monotonic()
    for _ in range(100):
        pacer.acquire()
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 1.0  # 100 requests at 200/s take half a second


def test_endpoints_keys_and_instances():
    assert endpoint_for("eu-01", None) == "https://rest.fra-01.braze.eu"
    assert endpoint_for(None, "https://rest.iad-03.braze.com/") == "https://rest.iad-03.braze.com"
    assert len(INSTANCES) == 15 and INSTANCES["US-10"] == "https://rest.us-10.braze.com"
    with pytest.raises(BrazeError, match="plain http"):
        BrazeClient("http://rest.iad-01.braze.com", "k")
    with pytest.raises(AuthError, match="set BRAZE_API_KEY"):
        BrazeClient("http://127.0.0.1:1", "")
    client = BrazeClient("http://localhost:1", "secret-key-123")
    assert "secret" not in repr(client) and "secret" not in str(client.stats.as_dict())


def test_client_delivers_every_result_under_load(emulator):
    """Many small requests and few workers: results arrive while requests are still being queued."""
    import threading

    from amp_braze.braze.payload import Request

    emulator.faults(latency_ms=30)  # the request queue fills up and results come back meanwhile
    reqs = [
        Request([orjson.dumps({"external_id": f"u{i}", "n": i}).decode()], [f"u{i}"])
        for i in range(60)
    ]
    client = BrazeClient(emulator.url, emulator.key, rate_per_second=100_000, concurrency=2)
    seen: list[str] = []
    box: dict = {}

    def slow_requests():  # like encoding a chunk of the plan between requests
        for r in reqs:
            time.sleep(0.01)
            yield r

    worker = threading.Thread(
        target=lambda: box.setdefault(
            "stats", client.send(slow_requests(), lambda r: seen.extend(r.accepted))
        )
    )
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "send() did not return"
    assert sorted(seen) == sorted(f"u{i}" for i in range(60))
    assert box["stats"].accepted == 60 and box["stats"].requests == 60
