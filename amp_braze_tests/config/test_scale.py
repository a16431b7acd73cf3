"""scale.shards: its bounds, and the queries a split pipeline cannot run refused when it loads."""

from __future__ import annotations

import pytest

from amp_braze.config import ConfigError, load_config
from amp_braze_tests.support.configs import MINIMAL, write_config


def test_one_shard_unless_told(tmp_path):
    assert load_config(write_config(tmp_path, MINIMAL)).scale.shards == 1
    cfg = load_config(write_config(tmp_path, MINIMAL + "scale: {shards: 16}\n"))
    assert cfg.scale.shards == 16


@pytest.mark.parametrize("n", [0, 101, "many"])
def test_a_count_out_of_bounds_names_the_key(tmp_path, n):
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, MINIMAL + f"scale: {{shards: {n}}}\n"))
    assert info.value.key == "scale.shards"


def test_a_profile_sql_over_everyone_is_refused_when_split(tmp_path):
    sql = (
        "SELECT customer_id AS external_id, rank() OVER (ORDER BY ltv) AS r FROM customer_profiles"
    )
    load_config(write_config(tmp_path, MINIMAL, sql))  # whole: fine
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, MINIMAL + "scale: {shards: 4}\n", sql))
    assert info.value.key == "profile_sql"
    assert "scale.shards = 4" in str(info.value) and "window" in str(info.value)


def test_a_segment_over_everyone_is_refused_when_split(tmp_path):
    body = (
        MINIMAL
        + """segments:
  top:
    sql: SELECT external_id FROM braze_customer_attributes ORDER BY ltv DESC LIMIT 10
scale: {shards: 2}
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, body))
    assert info.value.key == "segments.top.sql" and "LIMIT" in str(info.value)


def test_the_bundled_demo_can_be_split():
    from amp_braze.config import BUNDLED_CONFIG
    from amp_braze.config.shardable import check_shardable

    cfg = load_config(BUNDLED_CONFIG)
    check_shardable(cfg.model_copy(update={"scale": cfg.scale.model_copy(update={"shards": 8})}))
