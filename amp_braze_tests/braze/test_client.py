"""The Braze client: endpoints and keys, results under load, and what it does when Braze
misbehaves (a worker raising, an unreadable error body, failures in a row). Its retry and pacing
rules are in test_retry.py."""

from __future__ import annotations

import http.server
import threading
import time

import orjson
import pytest

from amp_braze.braze.client import AuthError, BrazeClient, BrazeError, BrazeUnavailable
from amp_braze.braze.instances import INSTANCES, endpoint_for
from amp_braze.braze.payload import Request
from amp_braze.braze.retry import RetryPolicy
from amp_braze_tests.support.servers import free_port


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


# -- results are not lost when a worker raises; a Braze that keeps failing stops the send ----------
class _Braze(http.server.BaseHTTPRequestHandler):
    """A tiny server for the client's edge cases: answers by the first object's external_id."""

    def do_POST(self):  # noqa: N802
        body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
        first = body["attributes"][0]["external_id"]
        if first == "u0":
            status, data = 401, b'{"message":"Invalid API key"}'
        elif first == "garbled":
            status, data = 201, b'{"message":"success","errors":[{"type":'
        elif first == "unplaced":
            status, data = 201, b'{"message":"success","errors":[{"type":"x"}]}'
        else:
            time.sleep(0.3)
            status, data = 201, b'{"message":"success"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def tiny_braze():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Braze)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _requests(ids: list[str]) -> list[Request]:
    return [Request([orjson.dumps({"external_id": i}).decode()], [i]) for i in ids]


def test_batches_finished_before_a_worker_raises_are_still_recorded(tiny_braze):
    """u1..u3 are in flight when u0's 401 stops the sync; Braze applies them, so they must be
    handed over (before: the 401 was raised at once and their results dropped)."""
    client = BrazeClient(tiny_braze, "k", rate_per_second=1000, concurrency=4)
    seen: list[str] = []
    with pytest.raises(AuthError):
        client.send(_requests(["u0", "u1", "u2", "u3"]), lambda r: seen.extend(r.accepted))
    assert sorted(seen) == ["u1", "u2", "u3"]


def test_an_error_body_that_cannot_be_read_accepts_nothing(tiny_braze):
    client = BrazeClient(tiny_braze, "k", rate_per_second=1000, concurrency=1)
    for first in ("garbled", "unplaced"):
        results = []
        client.send(_requests([first, "x1"])[:1], results.append)
        assert results[0].accepted == [] and results[0].failed == [first]


def test_the_client_gives_up_after_consecutive_failures_not_per_batch(tiny_braze):
    closed = free_port()
    client = BrazeClient(
        f"http://127.0.0.1:{closed}", "k", concurrency=2,
        retry=RetryPolicy(max_consecutive_failures=5),
    )  # fmt: skip
    with pytest.raises(BrazeUnavailable, match="failed 5 requests in a row"):
        client.send(_requests([f"u{i}" for i in range(1, 50)]), lambda r: None)
    assert client.stats.requests <= 5 + 2  # the ones already under way when it stopped
