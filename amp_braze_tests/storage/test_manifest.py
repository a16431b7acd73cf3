"""Versioned, create-only manifests: one writer per version, the newest wins, pruning keeps N."""

from __future__ import annotations

import orjson
import pytest

from amp_braze.storage import Storage, VersionedManifests


@pytest.fixture(params=["local", "s3"])
def manifests(request, tmp_path) -> VersionedManifests:
    if request.param == "local":
        storage = Storage(tmp_path / "root")
    else:
        storage = Storage(f"s3://{request.getfixturevalue('s3_bucket')}/amp")
    return VersionedManifests(storage, "things/ids")


def _publish(m: VersionedManifests, version: int, writer: str) -> bool:
    part = f"part-{writer}.parquet"
    m.storage.write_bytes(f"{m.folder_of(version)}/{part}", writer.encode())
    return m.create(version, {"version": version, "writer": writer, "part": part}, [part])


def test_a_second_writer_of_the_same_version_loses_and_leaves_nothing(manifests):
    m = manifests
    assert m.versions() == [] and m.newest() == (0, {})
    assert _publish(m, 1, "a")
    assert not _publish(m, 1, "b")
    assert m.read(1)["writer"] == "a"
    assert m.storage.list(m.folder_of(1)) == [
        "things/ids/v000001/manifest.json",
        "things/ids/v000001/part-a.parquet",
    ]  # the winner's files whole, none of the loser's
    assert _publish(m, 2, "b")  # the loser tries the next version
    assert m.newest() == (2, {"version": 2, "writer": "b", "part": "part-b.parquet"})


def test_the_newest_published_version_wins_and_unpublished_ones_do_not_exist(manifests):
    m = manifests
    for v in (1, 2, 10):
        assert _publish(m, v, f"w{v}")
    m.storage.write_bytes(f"{m.folder_of(11)}/part-x.parquet", b"killed before its manifest")
    m.storage.write_bytes("things/ids/manifest.json", b"{}")  # not inside a version's folder
    m.storage.write_bytes("things/ids/notes/manifest.json", b"{}")  # not a version's folder
    assert m.versions() == [1, 2, 10]
    assert m.newest()[0] == 10 and m.newest()[1]["writer"] == "w10"


def test_pruning_keeps_the_newest_n(manifests):
    m = manifests
    for v in range(1, 6):
        assert _publish(m, v, f"w{v}")
    assert m.prune(3) == [1, 2]
    assert m.versions() == [3, 4, 5]
    assert m.storage.list(m.folder_of(1)) == [] and m.storage.list(m.folder_of(2)) == []
    assert m.storage.list(m.folder_of(3)) == [
        "things/ids/v000003/manifest.json",
        "things/ids/v000003/part-w3.parquet",
    ]
    assert m.prune(3) == [] and m.versions() == [3, 4, 5]
    assert m.prune(1) == [3, 4] and m.newest()[0] == 5


def test_manifests_written_by_earlier_releases_still_load(manifests):
    """The identity ids' manifests were compact JSON, the sync state's indented: both read."""
    m = manifests
    m.storage.write_bytes(f"{m.folder_of(1)}/manifest.json", orjson.dumps({"next_id": 7}))
    m.storage.write_bytes(
        f"{m.folder_of(2)}/manifest.json",
        orjson.dumps({"next_id": 9}, option=orjson.OPT_INDENT_2),
    )
    assert m.versions() == [1, 2] and m.read(1) == {"next_id": 7}
    assert m.newest() == (2, {"next_id": 9})
