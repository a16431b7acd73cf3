"""Braze's rate limits as the emulator applies them: fixed windows aligned to multiples of the window
length, per endpoint, with Braze's rate-limit headers."""

from __future__ import annotations

import math
import time

# Braze documents 1,000 requests a minute for /users/external_ids/rename; merges share it here.
IDENTITY_RATE_LIMIT = (1000, 60.0)


class FixedWindowLimiter:
    """Braze-style fixed windows aligned to multiples of the window length."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.current_window = -1
        self.used = 0

    def take(self, now: float) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds until the window resets)."""
        w = int(now // self.window)
        if w != self.current_window:
            self.current_window, self.used = w, 0
        reset_in = (w + 1) * self.window - now
        if self.used >= self.limit:
            return False, 0, reset_in
        self.used += 1
        return True, self.limit - self.used, reset_in


def rate_limit_headers(
    limiter: FixedWindowLimiter, remaining: int, reset_in: float, style: str
) -> dict[str, str]:
    """X-RateLimit-Limit / -Remaining / -Reset (seconds remaining, or epoch with ``style="epoch"``)."""
    return {
        "X-RateLimit-Limit": str(limiter.limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(
            math.ceil(time.time() + reset_in) if style == "epoch" else max(1, math.ceil(reset_in))
        ),
    }
