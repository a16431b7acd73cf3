"""Numbered versions under one folder, each published by a create-only manifest.

Layout (the sync state and the identity ids both use it)::

    <folder>/v000007/<files>          written first, under names unique to their writer
    <folder>/v000007/manifest.json    create-only: the version exists once this does

A writer writes its files into the version's folder and then creates the manifest. The create
succeeds for exactly one writer of a version, so a version is always one writer's work; a writer
that loses removes its own files and may retry as the next version. Readers take the newest
version; a folder without a manifest (a writer killed before publishing) is no version at all.
Pruning keeps the newest versions and deletes each older one's manifest last, so a version is
whole until it no longer exists.
"""

from __future__ import annotations

from typing import Any

import orjson

from amp_braze.storage.base import Storage

MANIFEST = "manifest.json"


class VersionedManifests:
    """The versions under one folder of a storage root."""

    def __init__(self, storage: Storage, folder: str):
        self.storage = storage
        self.folder = folder.strip("/")

    def folder_of(self, version: int) -> str:
        """The folder a version's files and manifest live in."""
        return f"{self.folder}/v{version:06d}"

    def versions(self) -> list[int]:
        """Every published version, oldest first."""
        out = []
        start = len(self.folder) + 1
        for name in self.storage.list(self.folder):
            vdir, _, file = name[start:].partition("/")
            if file == MANIFEST and vdir[:1] == "v" and vdir[1:].isdigit():
                out.append(int(vdir[1:]))
        return sorted(out)

    def read(self, version: int) -> dict[str, Any]:
        return orjson.loads(self.storage.read_bytes(f"{self.folder_of(version)}/{MANIFEST}"))

    def newest(self) -> tuple[int, dict[str, Any]]:
        """(version, manifest) of the newest version; (0, {}) before the first."""
        versions = self.versions()
        return (versions[-1], self.read(versions[-1])) if versions else (0, {})

    def create(self, version: int, manifest: dict[str, Any], files: list[str]) -> bool:
        """Publish ``version`` with this manifest; ``files`` (names inside the version's folder)
        are this writer's, already written. False when another writer published the version
        first: this writer's files are removed, the winner's stay."""
        vdir = self.folder_of(version)
        data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
        if self.storage.create_bytes(f"{vdir}/{MANIFEST}", data):
            return True
        for f in files:
            self.storage.delete(f"{vdir}/{f}")
        return False

    def prune(self, keep: int) -> list[int]:
        """Delete all but the newest ``keep`` versions (``keep`` 0 deletes none); returns the
        versions deleted. Empty folders are left for the caller to tidy with what else it
        removes (``Storage.remove_empty_folders``)."""
        versions = self.versions()
        old = versions[:-keep] if len(versions) > keep else []
        for v in old:
            names = self.storage.list(self.folder_of(v))
            for name in sorted(names, key=lambda n: n.endswith(MANIFEST)):
                self.storage.delete(name)  # the manifest last: the version exists until then
        return old
