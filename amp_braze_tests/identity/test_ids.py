"""Stable amp_ids through grow / merge / split, and the merge chains a sync sends."""

import polars as pl

from amp_braze.identity.ids import EDGE_SCHEMA, IdMap, assign
from amp_braze.storage import Storage


def clusters(groups: list[list[str]]) -> pl.DataFrame:
    """One cluster per list of record ids (all from source 'a'); cluster_id = first row number."""
    rows, n = [], 0
    for group in groups:
        first = n
        for rid in group:
            rows.append({"source": "a", "record_id": rid, "cluster_id": first})
            n += 1
    return pl.DataFrame(
        rows, schema={"source": pl.String, "record_id": pl.String, "cluster_id": pl.Int64}
    )


def ids_of(a) -> dict[str, str]:
    return dict(zip(a.mapping["record_id"], a.mapping["amp_id"], strict=True))


def test_new_ids_then_grow_merge_split():
    empty = pl.DataFrame(schema={"source": pl.String, "record_id": pl.String, "amp_id": pl.String})
    first = assign(clusters([["r1", "r2"], ["r3"], ["r4", "r5", "r6"]]), empty, 1)
    ids = ids_of(first)
    assert ids == {
        "r1": "amp_0000000001", "r2": "amp_0000000001", "r3": "amp_0000000002",
        "r4": "amp_0000000003", "r5": "amp_0000000003", "r6": "amp_0000000003",
    }  # fmt: skip
    assert first.next_id == 4 and first.stats["ids_new"] == 3

    prev = first.mapping.drop("cluster_id")
    # r7 joins r1's cluster (grow); r3 joins it too (ids 1 and 2 merge, 1 is older); r6 leaves
    # r4-r5 (a split: the larger part keeps id 3).
    second = assign(clusters([["r1", "r2", "r3", "r7"], ["r4", "r5"], ["r6"]]), prev, first.next_id)
    ids = ids_of(second)
    assert ids["r7"] == ids["r1"] == ids["r3"] == "amp_0000000001"  # grew and merged: older id
    assert ids["r4"] == ids["r5"] == "amp_0000000003"  # the larger part keeps the id
    assert ids["r6"] == "amp_0000000004"  # the smaller part gets a new one
    assert second.merges.to_dicts() == [{"absorbed": "amp_0000000002", "kept": "amp_0000000001"}]
    assert second.stats == {
        "ids_kept": 2, "ids_new": 1, "ids_merged": 1, "ids_split": 1, "ids_retired": 0,
    }  # fmt: skip

    # Nothing changes: every id stays, nothing merges.
    third = assign(clusters([["r1", "r2", "r3", "r7"], ["r4", "r5"], ["r6"]]),
                   second.mapping.drop("cluster_id"), second.next_id)  # fmt: skip
    assert ids_of(third) == ids and third.merges.height == 0 and third.stats["ids_new"] == 0


def test_split_tie_goes_to_the_part_with_the_first_record():
    prev = pl.DataFrame({"source": ["a"] * 4, "record_id": ["r1", "r2", "r3", "r4"],
                         "amp_id": ["amp_0000000009"] * 4})  # fmt: skip
    out = assign(clusters([["r3", "r4"], ["r1", "r2"]]), prev, 10)
    ids = ids_of(out)
    assert ids["r3"] == "amp_0000000009" and ids["r1"] == "amp_0000000010"


def test_merge_chains_resolve_to_the_survivor(tmp_path):
    _merge_chains(Storage(tmp_path))


def test_the_mapping_on_s3_is_versioned_the_same_way(s3_bucket):
    _merge_chains(Storage(f"s3://{s3_bucket}/amp"))


def _merge_chains(store: Storage) -> None:
    ids = IdMap(store)
    empty = pl.DataFrame(schema={"source": pl.String, "record_id": pl.String, "amp_id": pl.String})
    v1 = assign(clusters([["r1"], ["r2"], ["r3"]]), empty, 1)
    assert ids.write(1, v1)
    v2 = assign(clusters([["r1"], ["r2", "r3"]]), v1.mapping.drop("cluster_id"), v1.next_id)
    assert ids.write(2, v2)
    v3 = assign(clusters([["r1", "r2", "r3"]]), v2.mapping.drop("cluster_id"), v2.next_id)
    assert ids.write(3, v3)
    assert not ids.write(3, v3)  # a version is created once
    assert ids.merges().to_dicts() == [
        {"absorbed": "amp_0000000002", "kept": "amp_0000000001"},
        {"absorbed": "amp_0000000003", "kept": "amp_0000000001"},
    ]
    version, mapping, next_id = ids.current()
    assert version == 3 and next_id == 4 and set(mapping["amp_id"]) == {"amp_0000000001"}


def test_ids_stored_by_earlier_releases_still_load(tmp_path):
    """The layout is part of the contract: a version written the way earlier releases wrote it
    (these names, a compact manifest) is read, and the next version lands beside it."""
    import re

    import orjson

    store = Storage(tmp_path)
    mapping = pl.DataFrame({"source": ["a"], "record_id": ["r1"], "amp_id": ["amp_0000000001"]})
    store.write_parquet("identity/ids/v000001/part-0123456789abcdef.parquet", mapping)
    manifest = {"version": 1, "part": "part-0123456789abcdef.parquet", "next_id": 2,
                "records": 1, "merges": 0, "edges": None, "polars": pl.__version__}  # fmt: skip
    store.write_bytes("identity/ids/v000001/manifest.json", orjson.dumps(manifest))
    ids = IdMap(store)
    version, loaded, next_id = ids.current()
    assert (version, next_id) == (1, 2) and loaded.equals(mapping)
    v2 = assign(clusters([["r1", "r2"]]), mapping, next_id)
    assert ids.write(2, v2, links=pl.DataFrame(schema=EDGE_SCHEMA))
    names = store.list("identity")
    assert names[:2] == [
        "identity/ids/v000001/manifest.json",
        "identity/ids/v000001/part-0123456789abcdef.parquet",
    ]
    assert re.fullmatch(r"identity/ids/v000002/edges-[0-9a-f]{16}\.parquet", names[2])
    assert names[3] == "identity/ids/v000002/manifest.json"
    assert re.fullmatch(r"identity/ids/v000002/part-[0-9a-f]{16}\.parquet", names[4])
    assert ids.current()[0] == 2 and ids.links(2) is not None
