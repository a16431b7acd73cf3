"""identity_clusters in steps of its own (identity.score_chunks > 1): a prepare step, one step
per piece of the scoring, a finish step; the same records, ids and links as the one-step asset,
on a first run and an incremental one, with its checks and metadata."""

from __future__ import annotations

import dagster as dg

from amp_braze.config import load_config
from amp_braze.definitions import build_defs
from amp_braze.demo.run import QUIET
from amp_braze.identity.ids import IdMap
from amp_braze.storage import Storage
from amp_braze_tests.support.configs import write_config
from amp_braze_tests.sync.test_merges import BRIDGE, CONFIG, DAY_ONE, SQL, write_feeds

STEPS = ["identity_prepare", *(f"identity_score_{i:02d}_{j:02d}" for i in range(2)
                               for j in range(2)), "identity_finish"]  # fmt: skip


def _brand(folder, chunks: int):
    folder.mkdir()
    body = CONFIG.format(url="http://127.0.0.1:9").replace(
        "  deterministic:", f"  score_chunks: {chunks}\n  deterministic:"
    )
    cfg = load_config(write_config(folder, body, SQL))
    return cfg, build_defs(cfg), Storage(cfg.storage)


def _resolve(defs: dg.Definitions) -> dg.ExecuteInProcessResult:
    keys = [dg.AssetKey(["sources", n]) for n in ("crm", "pos", "web")]
    keys.append(dg.AssetKey("identity_clusters"))
    assets = [a for a in defs.assets if set(a.keys) & set(keys)]
    return dg.materialize(
        assets,
        resources=defs.resources,
        selection=keys,
        run_config=QUIET,
        instance=dg.DagsterInstance.ephemeral(),
    )


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    (m,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("identity_clusters")
    ]
    return {k: v.value for k, v in m.metadata.items()}


def test_identity_in_pieces_gives_what_one_step_gives(tmp_path):
    one_cfg, one_defs, one_store = _brand(tmp_path / "one", 1)
    cfg, defs, store = _brand(tmp_path / "pieces", 2)
    for c in (one_cfg, cfg):
        write_feeds(c.profile_sql.parent, DAY_ONE)
    # The graph: a step per piece, each of which any worker could run.
    (asset,) = [a for a in defs.assets if dg.AssetKey("identity_clusters") in a.keys]
    assert sorted(n.name for n in asset.node_def.node_defs) == sorted(STEPS)
    assert {c.name for c in asset.check_keys} == {"cluster_size", "junk_values"}

    for day, feeds in (("first", DAY_ONE), ("second", DAY_ONE | BRIDGE)):
        for c in (one_cfg, cfg):
            write_feeds(c.profile_sql.parent, feeds)
        whole, split = _resolve(one_defs), _resolve(defs)
        ran = {e.step_key for e in split.all_events if e.event_type_value == "STEP_SUCCESS"}
        assert {f"identity_clusters.{s}" for s in STEPS} <= ran
        a, b = _metadata(whole), _metadata(split)
        for k in ("records", "clusters", "model_links", "deterministic_links", "ids_merged"):
            assert a[k] == b[k], (day, k, a[k], b[k])
        checks = {e.check_name: e.passed for e in split.get_asset_check_evaluations()}
        assert set(checks) == {"cluster_size", "junk_values"}
        t1, t2 = one_store.read_table("identity_clusters"), store.read_table("identity_clusters")
        assert t1.height > 250 and t1.equals(t2)
        assert store.list("identity/_pieces") == []  # the run's files are gone
    assert b["ids_merged"] == 1  # the bridge record merged two people, as in one step
    # The model's links the second runs stored: the same pairs and probabilities.
    pair = ["source_l", "record_id_l", "source_r", "record_id_r"]
    la, lb = (IdMap(s).links(2).sort(pair) for s in (one_store, store))
    assert la.height == lb.height > 10 and la.select(pair).equals(lb.select(pair))
    assert (la["match_probability"] - lb["match_probability"]).abs().max() < 1e-12
