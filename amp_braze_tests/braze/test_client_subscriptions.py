"""BrazeClient.post_subscriptions against the emulator over HTTP: answers, errors and its own
pacing."""

from __future__ import annotations

import time

import pytest

from amp_braze.braze.client import AuthError, BrazeClient
from amp_braze.braze.retry import RetryPolicy
from amp_braze_tests.support.servers import start_emulator

GROUP = "g-1"


def _body(ids: list[str], state: str = "subscribed") -> dict:
    group = {"subscription_group_id": GROUP, "subscription_state": state, "external_ids": ids}
    return {"subscription_groups": [group]}


def test_accepted_rejected_and_a_wrong_key(emulator):
    assert emulator.track({"attributes": [{"external_id": "u1", "a": 1}]}).status_code == 201
    client = BrazeClient(emulator.url, emulator.key)
    assert client.post_subscriptions(_body(["u1"]), ["u1"]).accepted == ["u1"]
    assert emulator.users()["u1"]["subscription_groups"] == {GROUP: "subscribed"}
    bad = client.post_subscriptions(_body(["u1"], state="maybe"), ["u1"])
    assert bad.accepted == [] and bad.rejected == [
        (
            "u1",
            "Braze answered 400 (subscription_groups[0]: subscription_state must be 'subscribed' "
            "or 'unsubscribed') for /v2/subscription/status/set",
        )
    ]
    with pytest.raises(AuthError, match="subscription.status.set: check BRAZE_API_KEY"):
        BrazeClient(emulator.url, "wrong").post_subscriptions(_body(["u1"]), ["u1"])


def test_paced_apart_from_track_and_429s_waited_out():
    em = start_emulator("k", subscription_rate_limit=2, subscription_rate_window=1.0)
    try:
        em.track({"attributes": [{"external_id": f"u{i}", "a": 1} for i in range(4)]})
        # /users/track at one request a second would hold four requests three seconds.
        client = BrazeClient(em.url, "k", rate_per_second=1.0, retry=RetryPolicy(max_retries=2))
        start = time.monotonic()
        results = [client.post_subscriptions(_body([f"u{i}"]), [f"u{i}"]) for i in range(4)]
        took = time.monotonic() - start
        assert [r.accepted for r in results] == [["u0"], ["u1"], ["u2"], ["u3"]]
        assert took < 2.9  # not paced by /users/track's limit; the 429s cost at most ~2 s
        stats = em.stats()
        assert stats["subscription_requests"] == 4
        assert client.stats.rate_limited == stats["rate_limited"] >= 1  # waited out, not lost
    finally:
        em.server.stop()
