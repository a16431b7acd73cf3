"""The emulator's /v2/subscription/status/set and /subscription/status/get, over HTTP."""

from __future__ import annotations

import pytest

from amp_braze.braze.event_rules import SUBSCRIPTION_GET, SUBSCRIPTION_SET
from amp_braze_tests.support.servers import start_emulator

GROUP = "8a7b6c5d-0000-4000-8000-000000000001"


def _set(emulator, body, key: str | None = None):
    headers = {"Authorization": f"Bearer {key or emulator.key}"}
    return emulator.http.post(f"{emulator.url}{SUBSCRIPTION_SET}", json=body, headers=headers)


def _get(emulator, group: str, *ids: str, key: str | None = None):
    headers = {"Authorization": f"Bearer {key or emulator.key}"}
    params = [("subscription_group_id", group), *(("external_id", i) for i in ids)]
    return emulator.http.get(f"{emulator.url}{SUBSCRIPTION_GET}", params=params, headers=headers)


def _group(state: str, ids: list[str], group: str = GROUP, **extra) -> dict:
    one = {"subscription_group_id": group, "subscription_state": state, "external_ids": ids}
    return {"subscription_groups": [one | extra]}


def _users(emulator, n: int) -> None:
    attrs = [{"external_id": f"u{i}", "first_name": "A"} for i in range(n)]
    assert emulator.track({"attributes": attrs}).status_code == 201


def test_set_stores_states_per_profile_and_costs_no_data_points(emulator):
    _users(emulator, 3)
    points = emulator.stats()["data_points"]
    r = _set(emulator, _group("subscribed", ["u0", "u1"]))
    assert r.status_code == 201 and r.json() == {"message": "success"}
    assert set(r.headers) >= {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
    assert r.headers["X-RateLimit-Limit"] == "5000"
    assert r.headers["X-RateLimit-Remaining"] == "4999"
    r = _set(emulator, _group("unsubscribed", ["u1"]) | {})
    assert r.status_code == 201
    users = emulator.users()
    assert users["u0"]["subscription_groups"] == {GROUP: "subscribed"}
    assert users["u1"]["subscription_groups"] == {GROUP: "unsubscribed"}
    assert "subscription_groups" not in users["u2"]
    r = _get(emulator, GROUP, "u0", "u1", "u2", "nobody")
    assert r.status_code == 200
    assert r.json() == {
        "status": {"u0": "Subscribed", "u1": "Unsubscribed", "u2": "Unknown", "nobody": "Unknown"},
        "message": "success",
    }
    stats = emulator.stats()
    assert stats["subscription_requests"] == 2
    assert stats["subscription_updates"] == 3
    assert stats["data_points"] == points  # state changes are free
    assert stats["track_requests"] == 1


def test_an_external_id_without_a_profile_is_ignored(emulator):
    _users(emulator, 1)
    assert _set(emulator, _group("subscribed", ["u0", "ghost"])).status_code == 201
    users = emulator.users()
    assert set(users) == {"u0"}  # no profile made for "ghost"
    assert emulator.stats()["subscription_unknown_ids"] == 1
    assert _get(emulator, GROUP, "ghost").json()["status"] == {"ghost": "Unknown"}


def test_several_groups_in_one_request(emulator):
    _users(emulator, 2)
    other = "8a7b6c5d-0000-4000-8000-000000000002"
    body = {
        "subscription_groups": [
            _group("subscribed", ["u0", "u1"])["subscription_groups"][0],
            _group("unsubscribed", ["u0"], group=other)["subscription_groups"][0],
        ]
    }
    assert _set(emulator, body).status_code == 201
    assert emulator.users()["u0"]["subscription_groups"] == {
        GROUP: "subscribed",
        other: "unsubscribed",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "subscription_groups must be a non-empty array of objects"),
        (
            {"subscription_groups": [{"subscription_state": "subscribed", "external_ids": ["u0"]}]},
            "subscription_groups[0]: subscription_group_id is required",
        ),
        (
            _group("maybe", ["u0"]),
            "subscription_groups[0]: subscription_state must be 'subscribed' or 'unsubscribed'",
        ),
        (
            _group("subscribed", [f"u{i}" for i in range(51)]),
            "subscription_groups[0]: external_ids can hold at most 50 values, got 51",
        ),
        (
            _group("subscribed", ["u0"], emails=["a@example.com"], phones=["+14155550100"]),
            "Either an email address or a phone number should be provided, but not both.",
        ),
        (
            _group("subscribed", "u0"),
            "The value provided for the external_ids field is not a valid ID array.",
        ),
    ],
)
def test_bad_requests_get_braze_like_400s_and_change_nothing(emulator, body, message):
    _users(emulator, 1)
    r = _set(emulator, body)
    assert r.status_code == 400 and r.json() == {"message": message}
    assert "subscription_groups" not in emulator.users()["u0"]


def test_exactly_50_ids_is_accepted(emulator):
    _users(emulator, 50)
    assert _set(emulator, _group("subscribed", [f"u{i}" for i in range(50)])).status_code == 201
    assert emulator.stats()["subscription_updates"] == 50


def test_auth_method_and_content_type(emulator):
    _users(emulator, 1)
    assert _set(emulator, _group("subscribed", ["u0"]), key="wrong").status_code == 401
    assert _get(emulator, GROUP, "u0", key="wrong").status_code == 401
    r = emulator.http.get(f"{emulator.url}{SUBSCRIPTION_SET}")
    assert r.status_code == 405
    r = emulator.http.post(
        f"{emulator.url}{SUBSCRIPTION_SET}",
        data=b"{}",
        headers={"Authorization": f"Bearer {emulator.key}", "Content-Type": "text/plain"},
    )
    assert r.status_code == 415
    assert _get(emulator, "", "u0").status_code == 400
    assert "subscription_groups" not in emulator.users()["u0"]


def test_its_own_rate_limit_with_braze_headers():
    em = start_emulator("k", subscription_rate_limit=2, subscription_rate_window=60.0)
    try:
        _users(em, 1)
        assert [_set(em, _group("subscribed", ["u0"])).status_code for _ in range(2)] == [201, 201]
        r = _set(em, _group("subscribed", ["u0"]))
        assert r.status_code == 429 and r.json() == {"message": "API Rate Limit Exceeded"}
        assert 1 <= int(r.headers["X-Ratelimit-Retry-After"]) <= 60
        assert em.track({"attributes": [{"external_id": "u0", "a": 1}]}).status_code == 201
        stats = em.stats()
        assert stats["rate_limited"] == 1 and stats["subscription_requests"] == 2
    finally:
        em.server.stop()
