"""The retry policy's rules: how long a 429 says to wait, and the shared pacer's rate."""

from __future__ import annotations

import pytest
import urllib3

from amp_braze.braze import retry
from amp_braze.braze.retry import Pacer, retry_after_seconds


def test_retry_after_headers():
    h = urllib3.HTTPHeaderDict
    assert retry_after_seconds(h({"X-Ratelimit-Retry-After": "7"})) == 7
    assert retry_after_seconds(h({"x-ratelimit-reset": "2"})) == 2
    assert retry_after_seconds(h({"X-RateLimit-Reset": "1800000010"}), now=1800000000) == 10
    assert retry_after_seconds(h({})) is None


class Clock:
    """The pacer's clock, moved only by its own sleeps: the slots it hands out are exact values,
    however loaded the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_800_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_pacer_keeps_the_rate(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(retry, "time", clock)
    pacer = Pacer(200)
    start = clock.monotonic()
    sent = []
    for _ in range(100):
        pacer.acquire()
        sent.append(clock.monotonic())
    elapsed = clock.monotonic() - start
    assert 0.45 <= elapsed < 1.0  # 100 requests at 200/s take half a second
    assert elapsed == pytest.approx(99 / 200)  # the first at once, then one every 1/200 s
    assert [b - a for a, b in zip(sent[:-1], sent[1:], strict=True)] == pytest.approx(
        [1 / 200] * 99
    )
    # A pause (after a 429) holds the next request until it ends, then the rate goes on.
    pacer.pause_until(clock.monotonic() + 2.0)
    pacer.acquire()
    assert clock.monotonic() - sent[-1] == pytest.approx(2.0)
