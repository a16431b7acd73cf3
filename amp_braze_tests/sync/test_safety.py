"""What keeps the sync state whole when runs race, die or meet a misbehaving Braze: the journal,
versions, the per-destination lease, and the client's bounds. Each test here failed on the code
before these fixes (see the notes in the tests). The client's own edge cases are in
braze/test_client.py."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import orjson
import polars as pl
import pytest

from amp_braze.braze.plan_columns import flag
from amp_braze.storage import Storage
from amp_braze.sync.journal_fold import CHECKPOINT, INTENT, Entry, fold_journal
from amp_braze.sync.lease import Lease, LeaseTimeout
from amp_braze.sync.plan import uncertain
from amp_braze.sync.state import SyncState
from amp_braze_tests.support.brand import assert_braze_matches, make_brand, make_feed
from amp_braze_tests.support.servers import free_port


def ck(ids: list[str], **values: list) -> pl.DataFrame:
    cols = {"__id": ids}
    for a, v in values.items():
        cols[a] = v
        cols[flag(a)] = [True] * len(ids)
    return pl.DataFrame(cols)


# -- 1. a version is exactly one writer's work ---------------------------------------------------
def test_a_commit_that_loses_the_race_leaves_the_winners_table(tmp_path):
    """Before: both writers wrote v1/part-00000.parquet; the loser's data sat under the winner's
    manifest."""
    state = SyncState(Storage(tmp_path), "dest")
    winner = pl.DataFrame({"__id": ["a", "b"], "tier": ["gold", "gold"]})
    loser = pl.DataFrame({"__id": ["a", "b"], "tier": ["lead", "lead"]})
    assert state.write_version(1, winner, 0)
    assert not state.write_version(1, loser, 0)
    assert state.current().table.equals(winner)
    parts = list((tmp_path / "sync/dest/state/v000001").glob("part-*.parquet"))
    assert len(parts) == 1  # the loser's part is gone, not left beside the winner's


# -- 2. entries fold in the order written, across runs -------------------------------------------
def test_a_later_runs_checkpoint_wins_whatever_the_run_ids():
    """Before: checkpoints sorted by run id (a UUID); a crashed run's could overrule a later one."""
    crashed = Entry(1, CHECKPOINT, ck(["u"], ltv=[5.0]))
    later = Entry(2, CHECKPOINT, ck(["u"], ltv=[7.0]))
    for order in ([crashed, later], [later, crashed]):
        assert fold_journal(None, order)["ltv"].to_list() == [7.0]


def test_journal_numbers_follow_the_order_written_and_skip_taken_ones(tmp_path):
    storage = Storage(tmp_path)
    a, b = SyncState(storage, "dest"), SyncState(storage, "dest")
    a.write_checkpoint(ck(["u"], ltv=[1.0]))
    b.write_checkpoint(ck(["u"], ltv=[2.0]))
    a.write_checkpoint(ck(["u"], ltv=[3.0]))
    assert [SyncState.entry_seq(n) for n in a.journal()] == [1, 2, 3]
    assert a.current().table["ltv"].to_list() == [3.0]
    a.commit()
    a.prune(2)  # the folded entries are deleted; new ones still number above them
    assert a.journal() == []
    b.write_checkpoint(ck(["u"], ltv=[4.0]))
    assert [SyncState.entry_seq(n) for n in b.journal()] == [4]
    assert b.current().table["ltv"].to_list() == [4.0]


# -- 3. the manifest stays small ------------------------------------------------------------------
@pytest.mark.slow
def test_manifest_does_not_grow_with_history(tmp_path, emulator, monkeypatch):
    """Before: every manifest listed every checkpoint ever folded."""
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=600, checkpoint_rows=100)
    state = SyncState(brand.storage, brand.config.syncs["braze"].names.state_key)
    sizes = []
    for k in range(4):
        brand.write_feed(make_feed(600).with_columns(pl.col("ltv") + k))
        brand.sync()
        version = state.versions()[-1]
        sizes.append(len(orjson.dumps(state.manifest(version))))
    assert max(sizes) - min(sizes) <= 8, sizes  # a few digits more, not a longer list


# -- 10. rows in flight when a run dies -----------------------------------------------------------
def test_an_intent_without_its_checkpoint_makes_the_value_uncertain():
    state = pl.DataFrame({"__id": ["a", "b"], "ltv": [1.0, 1.0]})
    intent = Entry(1, INTENT, ck(["a", "b"], ltv=[None, None]).drop("ltv"))
    accepted = Entry(2, CHECKPOINT, ck(["a"], ltv=[2.0]))
    out = fold_journal(state, [intent, accepted])
    assert out.columns == ["__id", "ltv", uncertain("ltv")]
    # a: confirmed, certain again. b: the last value known to be in Braze, or the one that went
    # out: uncertain, so the next plan sends the wanted value whatever it is.
    assert out.rows() == [("a", 2.0, False), ("b", 1.0, True)]


def test_a_killed_runs_unconfirmed_value_is_resent_when_the_data_goes_back(
    tmp_path, emulator, monkeypatch
):
    """The case that left Braze wrong for good: a run sends ltv=999 (Braze applies it) and dies
    before recording it; the data goes back to the old value; before, no run ever sent it again."""
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=300, checkpoint_rows=300)
    brand.sync()
    state = SyncState(brand.storage, brand.config.syncs["braze"].names.state_key)
    # What a run that died mid-send leaves: its intent, no checkpoint; Braze applied the value.
    rows = pl.DataFrame({"__id": ["user-5"], flag("ltv"): [True]})
    state.write_intent(rows)
    emulator.track({"attributes": [{"external_id": "user-5", "ltv": 999.0}]})
    assert emulator.users()["user-5"]["custom_attributes"]["ltv"] == 999.0
    _, meta = brand.sync()  # the data never changed: the wanted ltv is the old one
    assert meta["braze_sync_plan"]["users_changed"] == 1
    assert meta["braze_sync_plan"]["attributes_changed"] == 1
    assert emulator.users()["user-5"]["custom_attributes"]["ltv"] != 999.0
    assert_braze_matches(brand, emulator)
    _, meta = brand.sync()
    assert meta["braze_sync"]["users_sent"] == 0  # certain again: nothing more to send


def test_leftover_temporary_files_are_cleaned_up(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=150)
    brand.sync()
    base = Path(brand.storage.uri(f"sync/{brand.config.syncs['braze'].names.state_key}"))
    stale = base / "state" / ".part-00000.parquet.tmp-deadbeef"
    fresh = base / "journal" / ".e000000000099.parquet.tmp-cafe"
    for p in (stale, fresh):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    brand.write_feed(make_feed(150).with_columns(pl.col("ltv") + 1))
    brand.sync()
    assert not stale.exists()  # a write killed long ago
    assert fresh.exists()  # possibly a write still under way: left alone


# -- 6. an attribute that changes type -----------------------------------------------------------
@pytest.mark.slow
def test_an_attribute_that_changes_type_is_resent_and_recorded(tmp_path, emulator, monkeypatch):
    """Before: the plan raised 'cannot compare string with numeric type' on every later sync."""
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=300)
    brand.sync()
    assert emulator.users()["user-7"]["custom_attributes"]["visits"] == 7
    sql = (tmp_path / "profile.sql").read_text()
    (tmp_path / "profile.sql").write_text(
        sql.replace("visits,", "CAST(visits AS VARCHAR) AS visits,")
    )
    _, meta = brand.sync()
    assert meta["braze_sync_plan"]["attributes_changed"] == 300  # visits, for everyone
    assert emulator.users()["user-7"]["custom_attributes"]["visits"] == "7"
    state = SyncState(brand.storage, brand.config.syncs["braze"].names.state_key).current().table
    assert state.schema["visits"] == pl.String and state["visits"].null_count() == 0
    assert_braze_matches(brand, emulator)
    _, meta = brand.sync()
    assert meta["braze_sync"]["users_sent"] == 0


def test_a_type_change_cut_short_marks_the_rest_uncertain():
    """A run that sent only some users' new-typed values: the others still hold the old type in
    Braze, so they are not silently cast (before: strict=False turned them into nulls)."""
    state = pl.DataFrame({"__id": ["a", "b"], "visits": [1, 2]})
    out = fold_journal(state, [Entry(1, CHECKPOINT, ck(["a"], visits=["1"]))])
    assert out.schema["visits"] == pl.String
    assert out.rows() == [("a", "1", False), ("b", None, True)]


# -- 5. Braze unreachable, or rate limiting without end ------------------------------------------
@pytest.mark.slow
def test_an_unreachable_braze_stops_the_sync_with_one_clear_message(
    tmp_path, emulator, monkeypatch
):
    """Before: every batch retried 6 times with backoff; a large sync would take days to fail."""
    port = free_port()  # nothing listens there: connections are refused
    monkeypatch.setenv("BRAZE_API_KEY", "k")
    brand = make_brand(tmp_path, f"http://127.0.0.1:{port}", n=3000)
    result, _ = brand.sync(raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0].step_failure_data.error
    assert f"127.0.0.1:{port}/users/track failed 20 requests in a row" in failure.message
    assert "ConnectionRefusedError" in failure.message
    # How soon it stopped, counted by a server that drops every connection unanswered: the 20
    # failures in a row and the few already under way (concurrency 4), not 40 batches' retries.
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    emulator.faults(drop_rate=1.0)
    dropping = make_brand(tmp_path / "dropping", emulator.url, n=3000)
    result, _ = dropping.sync(raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0].step_failure_data.error
    assert "/users/track failed 20 requests in a row" in failure.message
    assert 20 <= emulator.stats()["dropped"] <= 20 + 4


def test_rate_limiting_without_end_fails_after_max_wait_seconds(tmp_path, emulator, monkeypatch):
    """Before: a 429 never counted as a failure, so an endless 429 hung the run forever."""
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=300)
    text = (tmp_path / "amp_braze.yaml").read_text()
    (tmp_path / "amp_braze.yaml").write_text(
        text.replace("  max_retries: 8", "  max_retries: 8\n  max_wait_seconds: 2")
    )
    from amp_braze.config import load_config
    from amp_braze_tests.support.brand import Brand

    brand = Brand(tmp_path, load_config(tmp_path / "amp_braze.yaml"), brand.storage)
    emulator.faults(force_429_seconds=3600)
    result, _ = brand.sync(raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0].step_failure_data.error
    assert "kept answering 429" in failure.message and "braze.max_wait_seconds" in failure.message
    # Braze asked for an hour; 2 s is all the sync waits, so no worker (concurrency 4) sent
    # again after its first 429, as the emulator counted them.
    assert 1 <= emulator.stats()["rate_limited"] <= 4
    asked = emulator.track({"attributes": [{"external_id": "probe"}]})
    assert int(asked.headers["X-Ratelimit-Retry-After"]) > 2
    emulator.faults(clear=True)
    _, meta = brand.sync()  # the next run sends everything
    assert meta["braze_sync"]["users_sent"] == 300
    assert_braze_matches(brand, emulator)


# -- 4. one sync at a time per destination --------------------------------------------------------
def test_the_lease_admits_one_holder_and_frees_when_the_holder_dies(tmp_path):
    storage = Storage(tmp_path)
    a = Lease(storage, "sync/d/lease", "run-a", ttl=30)
    a.acquire(0)
    b = Lease(storage, "sync/d/lease", "run-b", ttl=30)
    with pytest.raises(LeaseTimeout, match="run run-a"):
        b.acquire(0.3)
    a.release()
    b.acquire(0)  # free at the first look: with no wait, a held lease raises LeaseTimeout
    assert b.holder()[1]["owner"] == "run-b"
    b.release()
    # A holder process that no longer exists (SIGKILLed) holds nothing.
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)  # fmt: skip
    gen = max(int(n.rsplit("/g", 1)[1][:-5]) for n in storage.list("sync/d/lease"))
    storage.write_bytes(
        f"sync/d/lease/g{gen + 1:09d}.json",
        orjson.dumps(
            {
                "owner": "dead",
                "host": socket.gethostname(),
                "pid": int(dead.stdout),
                "expires_at": time.time() + 3600,
                "released": False,
            }
        ),  # fmt: skip
    )
    c = Lease(storage, "sync/d/lease", "run-c", ttl=30)
    c.acquire(0)
    assert c.holder()[1]["owner"] == "run-c"
    c.release()


def test_a_holder_that_exited_unreaped_holds_nothing():
    """A killed worker's child whose parent died too is adopted by the container's first process,
    which may never reap it: it still answers signal 0, but it is gone."""
    import subprocess
    import sys

    from amp_braze.sync.lease import _process_gone

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        holder = {"host": socket.gethostname(), "pid": child.pid}
        assert _process_gone(holder)  # exited, not yet reaped
        assert not _process_gone({"host": socket.gethostname(), "pid": os.getpid()})
    finally:
        child.wait()


@pytest.mark.slow
def test_two_syncs_of_one_destination_at_once_send_the_change_once(tmp_path, emulator, monkeypatch):
    """Before: two overlapping syncs each sent the whole change (2.00x the data points)."""
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=1500, concurrency=2)
    brand.sync()
    brand.write_feed(make_feed(1500).with_columns(pl.col("ltv") + 1))
    # Long enough requests that the second sync plans while the first sends, even on a busy
    # machine (two test processes): otherwise it plans after the first committed, and plans 0.
    emulator.faults(latency_ms=250)
    before = emulator.stats()["data_points"]
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(brand.sync()[1])) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    sent = emulator.stats()["data_points"] - before
    change = 1500  # ltv + 1 for everyone; segment 'big' moves for some
    plans = [m["braze_sync_plan"]["estimated_data_points"] for m in out]
    assert sent == min(plans) >= change, (sent, plans)
    assert sorted(m["braze_sync"]["users_sent"] for m in out)[0] == 0  # the second sent nothing
    assert max(m["braze_sync"]["lease_wait_seconds"] for m in out) > 0
    assert_braze_matches(brand, emulator)
