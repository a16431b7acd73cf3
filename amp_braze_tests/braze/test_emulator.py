"""The Braze emulator, exercised over HTTP as Braze's /users/track and /users/export/ids behave."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
import pytest
import requests

from amp_braze.braze.emulator import Emulator, EmulatorServer, Settings


def test_auth_content_type_json_and_routes(emulator):
    body = {"attributes": [{"external_id": "u1", "first_name": "Ann"}]}
    r = emulator.track(body, key="wrong")
    assert r.status_code == 401 and r.json() == {"message": "Invalid API key"}
    r = requests.post(
        f"{emulator.url}/users/track",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 401
    r = emulator.track(body, content_type="text/plain")
    assert r.status_code == 415
    r = emulator.track(b'{"attributes": [', content_type="application/json")
    assert r.status_code == 400 and r.json()["message"].startswith(
        "Error while parsing request body"
    )
    assert requests.post(f"{emulator.url}/users/nope").status_code == 404
    assert emulator.users() == {}  # nothing above was applied
    r = emulator.track(body)
    assert r.status_code == 201
    assert r.json() == {"message": "success", "attributes_processed": 1}
    assert emulator.users()["u1"]["first_name"] == "Ann"
    assert emulator.stats()["status"] == {"201": 1, "400": 1, "401": 2, "404": 1, "415": 1}


def test_object_limit_combined_and_legacy(emulator):
    attrs = [{"external_id": f"u{i}", "x": i} for i in range(50)]
    events = [
        {"external_id": f"u{i}", "name": "e", "time": "2026-01-01T00:00:00Z"} for i in range(26)
    ]
    r = emulator.track({"attributes": attrs, "events": events})
    assert r.status_code == 400 and r.json()["message"] == "Max Input Length Exceeded"
    r = emulator.track({"attributes": attrs, "events": events[:25]})
    assert r.status_code == 201
    assert r.json() == {"message": "success", "attributes_processed": 50, "events_processed": 25}
    emulator.configure(legacy_limits=True)
    r = emulator.track({"attributes": attrs + attrs[:25], "events": events * 2})  # 75 + 52 objects
    assert r.status_code == 201
    assert r.json()["attributes_processed"] == 75 and r.json()["events_processed"] == 52
    r = emulator.track({"attributes": attrs + attrs[:26]})
    assert r.status_code == 400 and r.json()["message"] == "Max Input Length Exceeded"


def test_body_over_4_mb_is_413(emulator):
    big = {
        "attributes": [{"external_id": f"u{i}", "blob": "x" * 250} for i in range(75)],
        "pad": "y" * (4 * 1024 * 1024),
    }
    r = emulator.track(big)
    assert r.status_code == 413
    assert emulator.users() == {}


def test_partial_errors_map_to_input_indexes_and_others_apply(emulator):
    objs = [
        {"external_id": "ok1", "email": "ann@example.com"},
        {"email": "bad-email", "external_id": "e1"},
        {"first_name": "NoId"},
        {"external_id": "two", "braze_id": "abc"},
        {"external_id": "x" * 988},
        {"external_id": "ok2", "dob": "1980-13-01"},
        {"external_id": "ok3", "gender": "male"},
        {"external_id": "ok4", "email_subscribe": "yes"},
        {"external_id": "ok5", "long": "z" * 256},
        {
            "external_id": "ok6",
            "fine": "z" * 255,
            "dob": "1980-12-21",
            "gender": "F",
            "push_subscribe": "opted_in",
        },
    ]
    r = emulator.track({"attributes": objs})
    assert r.status_code == 201
    out = r.json()
    assert out["attributes_processed"] == 2
    assert [(e["index"], e["input_array"]) for e in out["errors"]] == [
        (i, "attributes") for i in (1, 2, 3, 4, 5, 6, 7, 8)
    ]
    assert (
        out["errors"][0]["type"] == "The value provided for the 'email' field is not a valid email."
    )
    assert out["errors"][1]["type"] == "'external_id' or 'braze_id' or 'user_alias' is required"
    assert "EXTERNAL_USER_ID_TOO_LARGE" in out["errors"][3]["type"]
    assert "BAD_EMAIL_SUBSCRIPTION_STATE" in out["errors"][6]["type"]
    assert set(emulator.users()) == {"ok1", "ok6"}
    assert emulator.users()["ok6"]["dob"] == "1980-12-21"
    # Every object invalid -> fatal 400 with the errors.
    r = emulator.track({"attributes": [{"email": "nope", "external_id": "z"}]})
    assert r.status_code == 400
    assert (
        r.json()["message"]
        == "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
    )
    assert r.json()["errors"][0]["index"] == 0


def test_external_id_limit_is_in_bytes(emulator):
    ok = "é" * 493  # 986 bytes
    too_long = "é" * 494  # 988 bytes, 494 characters
    r = emulator.track(
        {"attributes": [{"external_id": ok, "a": 1}, {"external_id": too_long, "a": 1}]}
    )
    assert r.json()["attributes_processed"] == 1
    assert r.json()["errors"][0]["index"] == 1


def test_country_language_time_zone_best_effort(emulator):
    r = emulator.track(
        {"attributes": [
            {"external_id": "a", "country": "Australia", "language": "fr", "time_zone": "America/New_York"},
            {"external_id": "b", "country": "Atlantis", "language": "xx", "time_zone": "Mars/Olympus"},
        ]}
    )  # fmt: skip
    assert r.status_code == 201 and r.json()["attributes_processed"] == 2
    users = emulator.users()
    assert (users["a"]["country"], users["a"]["language"], users["a"]["time_zone"]) == (
        "AU",
        "fr",
        "America/New_York",
    )
    assert (
        "country" not in users["b"]
        and "language" not in users["b"]
        and "time_zone" not in users["b"]
    )


def test_null_unsets_and_arrays_are_sets_with_add_remove_and_cap(emulator):
    emulator.track(
        {
            "attributes": [
                {"external_id": "u", "tier": "gold", "first_name": "A", "tags": ["a", "b", "a"]}
            ]
        }
    )
    assert emulator.users()["u"]["custom_attributes"]["tags"] == ["b", "a"]
    emulator.track(
        {
            "attributes": [
                {
                    "external_id": "u",
                    "tier": None,
                    "first_name": None,
                    "tags": {"add": ["c", "b"], "remove": ["a"]},
                }
            ]
        }
    )
    u = emulator.users()["u"]
    assert "tier" not in u["custom_attributes"] and "first_name" not in u
    assert u["custom_attributes"]["tags"] == ["c", "b"]
    emulator.track(
        {"attributes": [{"external_id": "u", "tags": {"add": [f"t{i}" for i in range(30)]}}]}
    )
    tags = emulator.users()["u"]["custom_attributes"]["tags"]
    assert len(tags) == 25 and tags[0] == "t5" and tags[-1] == "t29"  # oldest dropped
    emulator.configure(array_cap=100)
    emulator.track({"attributes": [{"external_id": "u", "tags": [f"s{i}" for i in range(60)]}]})
    assert len(emulator.users()["u"]["custom_attributes"]["tags"]) == 60


def test_nested_objects_merge_inc_and_dates(emulator):
    emulator.track(
        {
            "attributes": [
                {
                    "external_id": "u",
                    "book": {"title": "A", "meta": {"pages": 10, "lang": "en"}},
                    "visits": {"inc": 2},
                }
            ]
        }
    )
    emulator.track(
        {
            "attributes": [
                {
                    "external_id": "u",
                    "_merge_objects": True,
                    "book": {"meta": {"pages": 12}},
                    "visits": {"inc": 3},
                }
            ]
        }
    )
    ca = emulator.users()["u"]["custom_attributes"]
    assert ca["book"] == {"title": "A", "meta": {"pages": 12, "lang": "en"}}
    assert ca["visits"] == 5
    emulator.track(
        {"attributes": [{"external_id": "u", "book": {"title": "B"}}]}
    )  # no merge: overwrite
    assert emulator.users()["u"]["custom_attributes"]["book"] == {"title": "B"}
    r = emulator.track({"attributes": [{"external_id": "u", "book": {"title": None}}]})
    assert r.status_code == 400  # a null inside a nested object drops the update
    dates = [
        "2026-01-02T03:04:05.000Z",
        "2026-01-02T03:04:05",
        "2026-01-02 03:04:05",
        "2026-01-02",
        "01/02/2026",
    ]
    r = emulator.track(
        {"attributes": [{"external_id": "d", **{f"d{i}": v for i, v in enumerate(dates)}}]}
    )
    assert r.json()["attributes_processed"] == 1
    assert list(emulator.users()["d"]["custom_attributes"].values()) == dates


def test_update_existing_only_and_aliases(emulator):
    r = emulator.track(
        {"attributes": [{"external_id": "new", "_update_existing_only": True, "a": 1}]}
    )
    assert r.status_code == 201 and emulator.users() == {}
    alias = {"alias_name": "ann@example.com", "alias_label": "email"}
    emulator.track({"attributes": [{"user_alias": alias, "a": 1}]})
    assert emulator.users() == {}  # aliases default to update-only
    emulator.track({"attributes": [{"user_alias": alias, "_update_existing_only": False, "a": 1}]})
    users = list(emulator.users().values())
    assert (
        len(users) == 1
        and users[0]["user_aliases"] == [alias]
        and users[0]["custom_attributes"] == {"a": 1}
    )
    emulator.track({"attributes": [{"user_alias": alias, "a": 2}]})
    assert list(emulator.users().values())[0]["custom_attributes"] == {"a": 2}
    # braze_id addresses an existing profile; email as a secondary identifier finds it too.
    bid = users[0]["braze_id"]
    emulator.track({"attributes": [{"braze_id": bid, "email": "ann@example.com"}]})
    emulator.track({"attributes": [{"email": "ann@example.com", "b": True}]})
    assert list(emulator.users().values())[0]["custom_attributes"] == {"a": 2, "b": True}


def test_data_points_counted_as_braze_bills(emulator):
    emulator.track(
        {
            "attributes": [
                {
                    "external_id": "u",
                    "first_name": "A",
                    "email": "a@x.io",
                    "email_subscribe": "opted_in",
                    "push_subscribe": "subscribed",
                    "tier": "gold",
                    "tags": ["a", "b", "c"],
                }
            ]
        }
    )
    assert emulator.stats()["data_points"] == 4  # first_name, email, tier, tags (whole array once)
    emulator.track(
        {"attributes": [{"external_id": "u", "tags": {"add": ["d", "e"]}, "visits": {"inc": 1}}]}
    )
    assert emulator.stats()["data_points"] == 6  # add counts per value, inc is free
    emulator.track(
        {
            "attributes": [
                {"external_id": "u", "book": {"t": "x", "m": {"p": 1, "q": 2}}, "tier": None}
            ]
        }
    )
    assert emulator.stats()["data_points"] == 10  # nested keys 3, null 1
    emulator.track({"attributes": [{"external_id": "u", "email": "not an email", "tier": "x"}]})
    assert emulator.stats()["data_points"] == 10  # a rejected object costs nothing
    emulator.track(
        {
            "events": [
                {
                    "external_id": "u",
                    "name": "e",
                    "time": "2026-01-01T00:00:00Z",
                    "properties": {"a": 1, "b": 2},
                }
            ]
        }
    )
    assert emulator.stats()["data_points"] == 11  # an event is 1, its properties are free


def test_export_ids(emulator):
    emulator.track(
        {
            "attributes": [
                {"external_id": f"u{i}", "first_name": f"N{i}", "tier": "gold"} for i in range(3)
            ]
        }
    )
    r = emulator.export(
        {
            "external_ids": ["u0", "u2", "ghost"],
            "fields_to_export": ["first_name", "custom_attributes"],
        }
    )
    assert r.status_code == 201
    out = r.json()
    assert out["invalid_user_ids"] == ["ghost"]
    assert out["users"] == [
        {"external_id": "u0", "first_name": "N0", "custom_attributes": {"tier": "gold"}},
        {"external_id": "u2", "first_name": "N2", "custom_attributes": {"tier": "gold"}},
    ]
    r = emulator.export({"external_ids": [f"u{i}" for i in range(51)]})
    assert r.status_code == 400


def test_every_identifier_follows_a_profile_through_changes_renames_and_merges(emulator):
    """The store keeps profiles packed and indexes emails, phones, aliases and braze_ids on first
    use; every later change must keep those lookups true."""

    def found(**identifier) -> list:
        return [
            u.get("external_id") or u["braze_id"]
            for u in emulator.export(identifier).json()["users"]
        ]

    def post(path: str, body: dict) -> dict:
        headers = {"Authorization": f"Bearer {emulator.key}", "Content-Type": "application/json"}
        return emulator.http.post(f"{emulator.url}{path}", json=body, headers=headers).json()

    nested = {"a": {"b": [1, 2.5, None, True]}, "s": "é"}
    emulator.track({"attributes": [
        {"external_id": "u1", "email": "Ann@Example.com", "phone": "+15555550100", "n": 2**40,
         "nested": nested, "flag": False, "list": ["x", "y"]},
        {"external_id": "u2", "email": "bob@example.com"},
    ]})  # fmt: skip
    assert found(email_address="ann@example.com") == ["u1"]  # builds the indexes
    assert found(phone="+15555550100") == ["u1"]
    emulator.track(
        {"attributes": [{"external_id": "u1", "email": "ann@new.example.com", "phone": None}]}
    )
    assert found(email_address="ann@example.com") == []
    assert found(email_address="ANN@new.example.com") == ["u1"]
    assert found(phone="+15555550100") == []
    # A user known only by an email, and one only by an alias, are created and found.
    emulator.track({"attributes": [{"email": "carol@example.com", "tier": "gold"}]})
    alias = {"alias_name": "crm-7", "alias_label": "crm"}
    emulator.track({"attributes": [{"user_alias": alias, "_update_existing_only": False, "x": 1}]})
    carol = emulator.export({"email_address": "carol@example.com"}).json()["users"][0]
    assert carol["custom_attributes"] == {"tier": "gold"} and "external_id" not in carol
    assert found(braze_id=carol["braze_id"]) == [carol["braze_id"]]
    assert len(found(user_aliases=[alias])) == 1
    # Rename: the new id finds the profile (and its email), the old one nothing.
    assert post("/users/external_ids/rename", {"external_id_renames": [
        {"current_external_id": "u1", "new_external_id": "u9"}]})["external_ids"] == ["u9"]  # fmt: skip
    assert found(external_ids=["u1"]) == [] and found(external_ids=["u9"]) == ["u9"]
    assert found(email_address="ann@new.example.com") == ["u9"]
    # Merge the alias user into u2: only u2 is left to find, with the alias user's attribute.
    post("/users/merge", {"merge_updates": [
        {"identifier_to_merge": {"user_alias": alias}, "identifier_to_keep": {"external_id": "u2"}}]})  # fmt: skip
    assert found(user_aliases=[alias]) == []
    users = emulator.users()
    assert sorted(users) == sorted(["u2", "u9", carol["braze_id"]])
    assert users["u2"]["custom_attributes"] == {"x": 1}
    u9 = users["u9"]
    assert u9["email"] == "ann@new.example.com" and "phone" not in u9
    assert u9["custom_attributes"] == {
        "n": 2**40,
        "nested": nested,
        "flag": False,
        "list": ["x", "y"],
    }
    assert emulator.stats()["users"] == 3


def test_emulator_merge_keeps_the_kept_users_values_and_fills_the_rest():
    e = Emulator(Settings(api_key="k"))
    h = {"authorization": "Bearer k", "content-type": "application/json"}
    body = {"attributes": [
        {"external_id": "old", "first_name": "Ann", "tier": "gold", "visits": 3},
        {"external_id": "new", "first_name": "Anne", "email": "a@x.org", "city_code": 7},
    ], "events": [{"external_id": "old", "name": "open", "time": "2026-11-01T00:00:00Z"},
                  {"external_id": "new", "name": "open", "time": "2026-11-02T00:00:00Z"}]}  # fmt: skip
    assert e.handle("POST", "/users/track", h, orjson.dumps(body))[0] == 201
    merge = {"merge_updates": [{"identifier_to_merge": {"external_id": "new"},
                                "identifier_to_keep": {"external_id": "old"}}]}  # fmt: skip
    status, _, out = e.handle("POST", "/users/merge", h, orjson.dumps(merge))
    assert (status, out) == (202, {"message": "success"})
    (user,) = e.users()
    assert user["external_id"] == "old" and user["first_name"] == "Ann"  # kept values stay
    assert user["email"] == "a@x.org"  # what the kept user lacked comes from the merged one
    assert user["custom_attributes"] == {"tier": "gold", "visits": 3, "city_code": 7}
    assert user["custom_events"] == {
        "open": {
            "count": 2,
            "first": "2026-11-01T00:00:00.000Z",
            "last": "2026-11-02T00:00:00.000Z",
        }
    }
    assert [e["time"] for e in user["event_objects"]] == [
        "2026-11-01T00:00:00.000Z",
        "2026-11-02T00:00:00.000Z",
    ]
    # Sent again (a retry after a crash): the merged user is gone, nothing changes.
    assert e.handle("POST", "/users/merge", h, orjson.dumps(merge))[0] == 202
    assert e.users() == [user] and e.stats.users_merged == 1
    too_many = {"merge_updates": merge["merge_updates"] * 51}
    assert e.handle("POST", "/users/merge", h, orjson.dumps(too_many))[0] == 400
    rename = {"external_id_renames": [{"current_external_id": "old", "new_external_id": "amp_9"}]}
    status, _, out = e.handle("POST", "/users/external_ids/rename", h, orjson.dumps(rename))
    assert status == 202 and out["external_ids"] == ["amp_9"]
    assert [u["external_id"] for u in e.users()] == ["amp_9"]


@pytest.mark.slow
def test_rate_limit_headers_and_429(emulator):
    emulator.configure(rate_limit=5, rate_window=2.0)
    # Start at the beginning of a window so all six requests fall into one.
    time.sleep(2.0 - (time.time() % 2.0) + 0.01)
    seen = [emulator.track({"attributes": [{"external_id": "u", "a": i}]}) for i in range(6)]
    assert [r.status_code for r in seen] == [201] * 5 + [429]
    assert [r.headers["X-RateLimit-Remaining"] for r in seen[:5]] == ["4", "3", "2", "1", "0"]
    assert seen[0].headers["X-RateLimit-Limit"] == "5"
    assert 1 <= int(seen[0].headers["X-RateLimit-Reset"]) <= 2
    assert "X-RateLimit-Remaining" not in seen[5].headers
    assert 1 <= int(seen[5].headers["X-Ratelimit-Retry-After"]) <= 2
    assert emulator.users()["u"]["custom_attributes"]["a"] == 4
    assert emulator.stats()["rate_limited"] == 1
    time.sleep(int(seen[5].headers["X-Ratelimit-Retry-After"]))
    assert emulator.track({"attributes": [{"external_id": "u", "a": 9}]}).status_code == 201
    emulator.configure(reset_header="epoch")
    asked_at = time.time()
    reset = int(
        emulator.track({"attributes": [{"external_id": "u", "a": 1}]}).headers["X-RateLimit-Reset"]
    )
    answered_at = time.time()
    assert asked_at < reset <= answered_at + 3  # epoch seconds: the end of the 2 s window


def test_faults_5xx_latency_drops_and_forced_429(emulator):
    body = {"attributes": [{"external_id": "u", "a": 1}]}
    emulator.faults(error_rate=1.0, seed=1)
    r = emulator.track(body)
    assert r.status_code in (500, 502, 503)
    assert emulator.users() == {}
    emulator.faults(error_rate=0.0, drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        emulator.track(body)
    assert emulator.users() == {}
    emulator.faults(drop_rate=0.0, drop_after_apply_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        emulator.track(body)
    assert emulator.users()["u"]["custom_attributes"] == {
        "a": 1
    }  # applied, then the answer was lost
    emulator.faults(drop_after_apply_rate=0.0, latency_ms=300)
    assert emulator.track(body).status_code == 201
    with pytest.raises(requests.ReadTimeout):  # the answer is held back: none within 0.1 s
        emulator.track(body, timeout=(10, 0.1))
    emulator.faults(latency_ms=0, force_429_seconds=2)
    r = emulator.track(body)
    assert r.status_code == 429 and r.headers["X-Ratelimit-Retry-After"] in ("1", "2")
    stats = emulator.stats()
    assert (stats["injected_5xx"], stats["dropped"], stats["rate_limited"]) == (1, 2, 1)
    emulator.http.post(f"{emulator.url}/_emulator/reset")
    assert emulator.track(body).status_code == 201  # reset clears faults, profiles and counters
    assert emulator.stats()["track_requests"] == 1


def test_cli_prints_url_serves_and_persists_state(tmp_path):
    state = tmp_path / "profiles.json"
    cmd = [
        sys.executable,
        "-m",
        "amp_braze.cli",
        "emulator",
        "--port",
        "0",
        "--api-key",
        "k",
        "--state",
        str(state),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        h = {"Authorization": "Bearer k", "Content-Type": "application/json"}
        r = requests.post(
            f"{url}/users/track",
            json={"attributes": [{"external_id": "p", "tier": "gold"}]},
            headers=h,
        )
        assert r.status_code == 201
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    saved = orjson.loads(state.read_bytes())
    assert [(u["external_id"], u["custom_attributes"]) for u in saved] == [("p", {"tier": "gold"})]
    with EmulatorServer(settings=Settings(api_key="k"), state_file=state) as server:
        users = requests.get(f"{server.url}/_emulator/users").json()
        assert users[0]["custom_attributes"] == {"tier": "gold"}


def test_blocklisted_ids_and_bad_request_faults(emulator):
    emulator.faults(blocklisted_external_ids=["bad"])
    r = emulator.track(
        {"attributes": [{"external_id": "ok", "a": 1}, {"external_id": "bad", "a": 1}]}
    )
    assert r.status_code == 201
    assert r.json()["errors"] == [
        {
            "type": "provided external_id is blacklisted and disallowed",
            "input_array": "attributes",
            "index": 1,
        }
    ]
    emulator.faults(blocklisted_external_ids=[], bad_request_external_ids=["poison"])
    r = emulator.track(
        {"attributes": [{"external_id": "ok2", "a": 1}, {"external_id": "poison", "a": 1}]}
    )
    assert r.status_code == 400
    assert set(emulator.users()) == {"ok"}


def test_users_come_a_page_at_a_time(emulator):
    """/_emulator/users with {"offset", "limit"}: every profile once over the pages, in the
    order of the whole list (a benchmark reads ten million this way)."""
    sent = [{"external_id": f"u{i:03d}", "n": i} for i in range(120)]
    assert emulator.track({"attributes": sent[:75]}).status_code == 201
    assert emulator.track({"attributes": sent[75:]}).status_code == 201
    whole = requests.get(f"{emulator.url}/_emulator/users").json()
    pages, offset = [], 0
    while page := requests.get(
        f"{emulator.url}/_emulator/users", data=orjson.dumps({"offset": offset, "limit": 50})
    ).json():
        pages.append(page)
        offset += len(page)
    assert [len(p) for p in pages] == [50, 50, 20]
    assert [u for p in pages for u in p] == whole
    assert sorted(u["external_id"] for u in whole) == [u["external_id"] for u in sent]
