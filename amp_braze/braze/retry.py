"""When to try a request again, and how long to wait: the retry policy and the shared pacer.

Both are small values the client is given, so a sync, a benchmark or a test can say how patient
it is without touching how requests are sent.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6  # per request, for 5xx and network errors
    backoff_base: float = 0.25  # seconds; doubles per attempt, with jitter
    backoff_cap: float = 20.0
    max_wait_seconds: float = 900.0  # all 429 waiting in one sync, all told
    max_consecutive_failures: int = 20  # failed requests in a row (no answer in between): stop
    # A request that got no answer (a network error) may have been applied: retried for
    # attributes (sending a value twice is harmless), not for events (a duplicate is not).
    retry_unanswered: bool = True

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The jittered wait before retry number ``attempt`` (1-based)."""
        base = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return base * rng.uniform(0.5, 1.5)

    def rate_limited_wait(self, times: int) -> float:
        """The wait after the ``times``-th 429 that came without a Retry-After: longer each time."""
        return min(self.backoff_cap, self.backoff_base * 2 ** min(times, 8))


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait after a 429: X-Ratelimit-Retry-After, else X-RateLimit-Reset (epoch or delta)."""
    for name in ("x-ratelimit-retry-after", "retry-after"):
        v = headers.get(name)
        if v:
            try:
                return max(0.0, float(v))
            except ValueError:
                pass
    v = headers.get("x-ratelimit-reset")
    if v:
        try:
            reset = float(v)
        except ValueError:
            return None
        if reset > 1e9:  # epoch seconds
            return max(0.0, reset - (now if now is not None else time.time()))
        return max(0.0, reset)
    return None


class Pacer:
    """The rate limit, shared by every worker: spaces requests evenly at ``rate`` per second;
    ``pause_until`` holds everyone (after a 429)."""

    def __init__(self, rate: float, start_at: float = 0.0):
        self.interval = 1.0 / rate
        self.lock = threading.Lock()
        # start_at (epoch seconds): not before the previous sender's next slot, if later.
        self.next_slot = time.monotonic() + max(0.0, start_at - time.time())
        self.paused = 0.0  # wall-clock seconds everyone was held by pauses, all told

    def pause_until(self, t: float) -> None:
        with self.lock:
            start = max(self.next_slot, time.monotonic())
            self.paused += max(0.0, t - start)
            self.next_slot = max(self.next_slot, t)

    def next_slot_epoch(self) -> float:
        """The next free slot as epoch seconds (monotonic time means nothing to another process)."""
        with self.lock:
            return time.time() + max(0.0, self.next_slot - time.monotonic())

    def acquire(self) -> None:
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
