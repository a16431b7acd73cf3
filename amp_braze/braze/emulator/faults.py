"""Failures the emulator injects on request, set at run time through ``/_emulator/faults``:
latency, 5xx answers, connections dropped before or after a request is applied, 429s for a while,
external ids Braze refuses, requests Braze answers with 400."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any


class Dropped:
    """Close the connection without an answer (what a broken network does)."""

    def __repr__(self) -> str:
        return "DROP"


DROP = Dropped()
Response = tuple[int, dict[str, str], Any]  # status, extra headers, JSON body


@dataclass
class Faults:
    """Failures to inject, set at run time through /_emulator/faults."""

    latency_ms: float = 0.0  # added to every /users/* response
    error_rate: float = 0.0  # share of requests answered 500/502/503 (not applied)
    drop_rate: float = 0.0  # share of connections closed before the request is applied
    drop_after_apply_rate: float = 0.0  # share applied, then the connection closed with no answer
    force_429_until: float = 0.0  # epoch seconds; every /users/* request is 429 until then
    blocklisted_external_ids: list[str] = field(
        default_factory=list
    )  # objects for these are rejected
    bad_request_external_ids: list[str] = field(
        default_factory=list
    )  # a request holding one is a 400
    seed: int | None = None


def injected_before(faults: Faults, rng: random.Random, stats: Any) -> Response | Dropped | None:
    """The failure to answer with instead of applying the request, if any (counted in stats)."""
    now = time.time()
    if faults.force_429_until > now:
        stats.rate_limited += 1
        retry = max(1, math.ceil(faults.force_429_until - now))
        return (
            429,
            {"X-Ratelimit-Retry-After": str(retry)},
            {"message": "API Rate Limit Exceeded"},
        )
    if faults.drop_rate and rng.random() < faults.drop_rate:
        stats.dropped += 1
        return DROP
    if faults.error_rate and rng.random() < faults.error_rate:
        stats.injected_5xx += 1
        status = rng.choice((500, 502, 503))
        return status, {}, {"message": "Internal Server Error (emulator fault)"}
    return None


def drops_after_apply(faults: Faults, rng: random.Random) -> bool:
    """Whether to close the connection after applying the request, before answering."""
    return bool(faults.drop_after_apply_rate) and rng.random() < faults.drop_after_apply_rate
