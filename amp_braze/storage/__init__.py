"""Parquet tables and small JSON documents under a storage root: a local folder or s3://bucket/prefix.

``Storage(root)`` is the interface (``base``) and gives the back-end the root names:
``LocalStorage`` (``local``) or ``S3Storage`` (``s3``). ``VersionedManifests`` (``manifest``) is
the create-only, numbered versions the sync state and the identity ids are published as.
"""

from amp_braze.storage.base import (
    COMPRESSION,
    SUMMARY_KEY,
    TABLES,
    Snapshot,
    Storage,
    non_null_counts,
)
from amp_braze.storage.local import LocalStorage
from amp_braze.storage.manifest import VersionedManifests
from amp_braze.storage.s3 import S3Storage, s3_client, s3_storage_options, split_s3

__all__ = [
    "COMPRESSION",
    "SUMMARY_KEY",
    "TABLES",
    "LocalStorage",
    "S3Storage",
    "Snapshot",
    "Storage",
    "VersionedManifests",
    "non_null_counts",
    "s3_client",
    "s3_storage_options",
    "split_s3",
]
