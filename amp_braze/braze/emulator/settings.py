"""What the emulator is set up with (its key, rate limits, array cap, Braze's limit flavour) and
what it counts (requests, objects, data points, 429s, faults), served at /_emulator/stats."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from amp_braze.braze import event_rules, field_rules


@dataclass
class Settings:
    api_key: str = "emulator-key"
    rate_limit: int = field_rules.DEFAULT_RATE_LIMIT
    rate_window: float = field_rules.DEFAULT_RATE_WINDOW_SECONDS
    export_rate_limit: int = field_rules.EXPORT_RATE_LIMIT
    export_rate_window: float = field_rules.EXPORT_RATE_WINDOW_SECONDS
    legacy_limits: bool = False  # 75 per array instead of 75 combined
    array_cap: int = field_rules.DEFAULT_ARRAY_CAP
    reset_header: str = "seconds"  # X-RateLimit-Reset as "seconds" remaining or "epoch"
    subscription_rate_limit: int = event_rules.SUBSCRIPTION_RATE_LIMIT
    subscription_rate_window: float = event_rules.SUBSCRIPTION_RATE_WINDOW_SECONDS


@dataclass
class Stats:
    requests: int = 0
    track_requests: int = 0
    export_requests: int = 0
    objects: int = 0
    attributes_processed: int = 0
    events_processed: int = 0
    purchases_processed: int = 0
    ecommerce_events_processed: int = 0  # of events_processed: the recommended eCommerce ones
    purchase_quantity: int = 0  # units the purchases recorded (a quantity of 3 is 3 purchases)
    event_properties_dropped: int = 0  # properties past the 256 Braze keeps per event/purchase
    data_points: int = 0
    # Data points spent on values the profile already held (set to what it was, or unset when
    # absent): what a sync that sends only changes should keep near zero.
    unchanged_data_points: int = 0
    rate_limited: int = 0
    object_errors: int = 0
    injected_5xx: int = 0
    dropped: int = 0
    users_created: int = 0
    identity_requests: int = 0  # /users/merge and /users/external_ids/rename
    users_merged: int = 0
    users_renamed: int = 0
    subscription_requests: int = 0  # /v2/subscription/status/set requests applied
    subscription_updates: int = 0  # profile states set by them
    subscription_unknown_ids: int = 0  # ids no profile has: ignored
    bytes_received: int = 0
    status: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = {str(k): v for k, v in sorted(self.status.items(), key=lambda kv: str(kv[0]))}
        return d
