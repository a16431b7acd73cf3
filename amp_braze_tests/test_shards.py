"""The shard rule (a customer's shard, fixed across versions and machines) and the layout guard."""

from __future__ import annotations

import hashlib

import polars as pl
import pytest

from amp_braze.shards import (
    LayoutChanged,
    check_layout,
    recorded_shards,
    shard_index,
    shard_names,
    shard_of,
)
from amp_braze.storage import Storage

# Fixed vectors: the key, the first 8 bytes of its MD5 as a big-endian integer, its shard of 4 and
# of 16. Written down once; any change to the rule (or to how a library computes it) fails here.
VECTORS = [
    ("cust-000000000", 17176830740810905695, 3, 15),
    ("user-1", 15480965748355791606, 2, 6),
    ("user-42", 8516795111299649485, 1, 13),
    ("", 15284527576400310788, 0, 4),
    ("Zoë", 18105789311491043388, 0, 12),
    ("12345", 9402613386967674988, 0, 12),
]


def test_the_fixed_vectors_hold():
    keys = pl.Series("k", [v[0] for v in VECTORS])
    assert shard_of(keys, 4).to_list() == [v[2] for v in VECTORS]
    assert shard_of(keys, 16).to_list() == [v[3] for v in VECTORS]
    # The vectors themselves are what RFC 1321's MD5 gives (hashlib here, DuckDB in the rule).
    for key, number, four, sixteen in VECTORS:
        assert int(hashlib.md5(key.encode()).hexdigest()[:16], 16) == number
        assert (number % 4, number % 16) == (four, sixteen)


def test_every_key_gets_the_shard_its_md5_says():
    keys = [f"customer-{i}@example.com" for i in range(5000)]
    got = shard_of(pl.Series(keys), 7).to_list()
    want = [int(hashlib.md5(k.encode()).hexdigest()[:16], 16) % 7 for k in keys]
    assert got == want
    counts = pl.Series(got).value_counts()
    assert counts.height == 7
    assert counts.get_column("count").min() > 5000 / 7 * 0.8  # spread evenly


def test_integer_keys_hash_as_their_digits_and_no_key_is_the_first_shard():
    assert shard_of(pl.Series([12345, None]), 16).to_list() == [12, 0]
    assert shard_of(pl.Series(["12345", None], dtype=pl.String), 16).to_list() == [12, 0]
    assert shard_of(pl.Series(["a", "b"]), 1).to_list() == [0, 0]


def test_shard_names():
    assert shard_names(3) == ["shard_00", "shard_01", "shard_02"]
    assert shard_names(16)[-1] == "shard_15"
    assert [shard_index(n) for n in shard_names(12)] == list(range(12))


def test_the_layout_is_recorded_once_and_another_count_refused(tmp_path):
    shared = Storage(tmp_path)
    check_layout(shared, 1)
    assert recorded_shards(shared) == 1 and not shared.exists("shards/layout.json")
    check_layout(shared, 4)
    assert recorded_shards(shared) == 4
    check_layout(shared, 4)
    with pytest.raises(LayoutChanged, match=r"split in 4 shard\(s\).*scale.shards = 2.*reshard"):
        check_layout(shared, 2)
    with pytest.raises(LayoutChanged, match=r"scale.shards = 1"):
        check_layout(shared, 1)


def test_unsharded_sync_state_is_not_taken_for_a_split_one(tmp_path):
    shared = Storage(tmp_path)
    shared.write_json("sync/braze-external_id/state/v000001/manifest.json", {"version": 1})
    with pytest.raises(LayoutChanged, match=r"split in 1 shard\(s\).*amp-braze reshard"):
        check_layout(shared, 4)
    assert not shared.exists("shards/layout.json")


def test_a_shard_keeps_its_files_apart_and_shares_the_root(tmp_path):
    root = Storage(tmp_path)
    part = root.shard("shard_02", 4)
    assert part.root == f"{tmp_path}/shards/4/shard_02"
    assert part.shared.root == root.root and root.shared is root
