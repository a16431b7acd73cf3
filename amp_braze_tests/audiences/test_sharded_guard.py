"""The segment size guard of a pipeline split in shards judges the whole segment: a change that
reaches every shard stops at the first shard to see it, while the whole segment is off every
shard stops, and a shard's own small change passes."""

from __future__ import annotations

import dagster as dg
import polars as pl

from amp_braze.audiences.memberships import sharded_size_guard
from amp_braze.config import load_config
from amp_braze.definitions import build_defs
from amp_braze_tests.audiences.test_assets import CONFIG, SQL, _users, _write_feed
from amp_braze_tests.support.configs import write_config


def _config(tmp_path, n=4):
    body = CONFIG.replace("    exclude: [big]\n", "    exclude: [big]\n    max_change: 0.2\n")
    body = body.replace(
        "    sql: SELECT external_id FROM braze_customer_attributes WHERE ltv > 100\n",
        "    sql: SELECT external_id FROM braze_customer_attributes WHERE ltv > 100\n"
        "    max_change: 0.2\n",
    )
    return load_config(write_config(tmp_path, body + f"scale: {{shards: {n}}}\n", SQL))


def _shards(accepted: list[int], latest: list[int] | None = None) -> dict:
    latest = latest or accepted
    return {
        f"shard_{i:02d}": {"accepted": {"big": a}, "latest": {"big": b}}
        for i, (a, b) in enumerate(zip(accepted, latest, strict=True))
    }


def test_a_change_in_every_shard_stops_at_the_first(tmp_path):
    cfg = _config(tmp_path)
    # 1000 members, 250 a shard; shard_00 is the first to lose 30% of its members.
    result = sharded_size_guard(cfg, {"big": 175}, "shard_00", _shards([250] * 4), 4)
    assert not result.passed and result.baseline == {"big": 1000}
    assert (
        "changed by -75 members in shard_00, -300 if every shard changed alike"
        in (result.problems[0])
    )


def test_a_shards_small_change_passes(tmp_path):
    cfg = _config(tmp_path)
    result = sharded_size_guard(cfg, {"big": 240}, "shard_01", _shards([250] * 4), 4)
    assert result.passed and not result.problems


def test_while_the_whole_segment_is_off_every_shard_stops(tmp_path):
    cfg = _config(tmp_path)
    # Three shards lost 60 members each (24% if every shard changed alike: they failed and
    # accepted nothing). shard_03 loses only 30 (12%: alone it would pass), but the whole
    # segment is now 3 x 190 + 220 = 790 of 1,000 accepted: it stops too.
    latest = _shards([250] * 4, [190, 190, 190, 250])
    result = sharded_size_guard(cfg, {"big": 220}, "shard_03", latest, 4)
    assert not result.passed and len(result.problems) == 1
    assert "has 790 members over its 4 shards against 1,000 accepted (21%" in result.problems[0]
    alone = sharded_size_guard(cfg, {"big": 220}, "shard_03", _shards([250] * 4), 4)
    assert alone.passed


def test_until_every_shard_has_accepted_sizes_there_is_nothing_to_compare(tmp_path):
    cfg = _config(tmp_path)
    partial = {k: v for k, v in _shards([250] * 4).items() if k != "shard_03"}
    assert sharded_size_guard(cfg, {"big": 0}, "shard_00", partial, 4).passed


def test_the_guard_runs_per_shard_over_the_whole_segment(tmp_path):
    """Through Dagster: two shards; everyone's ltv collapses; the first shard's run fails its
    check and writes nothing downstream; accepting the change lets it through."""
    cfg = _config(tmp_path, n=2)
    _write_feed(tmp_path, _users(40))

    def run(shard: str, accept: bool = False):
        defs = build_defs(load_config(tmp_path / "amp_braze.yaml"))
        assets = [a for a in defs.assets if not any("sync" in k.to_user_string() for k in a.keys)]
        config = {"ops": {"segment_memberships": {"config": {"accept_segment_changes": accept}}}}
        result = dg.materialize(
            assets,
            resources=defs.resources,
            instance=dg.DagsterInstance.ephemeral(),
            partition_key=shard,
            raise_on_error=False,
            run_config=config,
        )
        checks = {
            e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
        return checks["segment_size_guard"]

    assert run("shard_00").passed and run("shard_01").passed
    _write_feed(tmp_path, [(i, e, t, 0.0, "2026-02-01") for i, e, t, _, _ in _users(40)])
    check = run("shard_00")
    assert not check.passed and "if every shard changed alike" in check.description
    assert run("shard_00", accept=True).passed
    shared = cfg.storage
    sizes = pl.read_json(f"{shared}/audiences/shards/2/shard_00.json")
    assert sizes["accepted"].struct.field("big").to_list() == [0]
