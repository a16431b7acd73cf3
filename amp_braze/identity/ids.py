"""Stable amp_ids: which id each cluster keeps from the previous run, and where the mapping lives.

An ``amp_id`` is what a sync sends as Braze's ``external_id``, so it must not move merely because
the linkage ran again. The rules, applied to the overlap between the new clusters and the previous
mapping:

- each previous id goes *home* to the new cluster holding most of its records (a split keeps the
  id on the larger part; ties go to the part with the smaller first record);
- a cluster that is home to several previous ids keeps the oldest (ids are numbered in the order
  they were made, so the smallest) and the others are *merged* into it;
- a cluster that is home to none gets a new id.

Storage, beside the sync state and published the same way (``amp_braze.storage.manifest``)::

    identity/ids/v000007/part-<token>.parquet   source, record_id, amp_id
    identity/ids/v000007/manifest.json          create-only: the version exists once this does
    identity/merges/v000007.parquet             absorbed, kept: merges made by that version (kept
                                                for good: a sync applies the ones it has not)
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import polars as pl

from amp_braze.storage import Storage, VersionedManifests

AMP_ID = "amp_id"
PREFIX = "amp_"
DIGITS = 10
KEEP_VERSIONS = 3
_MAP_SCHEMA = {"source": pl.String, "record_id": pl.String, AMP_ID: pl.String}
# The model's links of a version, by record, so the next run re-scores only changed records.
EDGE_SCHEMA = {
    "source_l": pl.String,
    "record_id_l": pl.String,
    "source_r": pl.String,
    "record_id_r": pl.String,
    "match_probability": pl.Float64,
}
MERGE_SCHEMA = {"absorbed": pl.String, "kept": pl.String}


def format_ids(numbers: pl.Expr) -> pl.Expr:
    """``amp_0000000042``: the zero padding makes text order the order ids were made in."""
    return pl.concat_str(pl.lit(PREFIX), numbers.cast(pl.String).str.zfill(DIGITS))


@dataclass
class Assignment:
    mapping: pl.DataFrame  # source, record_id, amp_id, cluster_id
    merges: pl.DataFrame  # absorbed, kept
    next_id: int
    stats: dict[str, int]


def assign(clusters: pl.DataFrame, previous: pl.DataFrame, next_id: int) -> Assignment:
    """clusters: source, record_id, cluster_id (cluster_id: the smallest row number in it, so new
    ids are handed out in record order); previous: source, record_id, amp_id."""
    keys = ["source", "record_id"]
    overlap = clusters.join(previous, on=keys, how="inner").group_by("cluster_id", AMP_ID).len()
    home = overlap.sort([AMP_ID, "len", "cluster_id"], descending=[False, True, False]).unique(
        AMP_ID, keep="first"
    )
    chosen = home.group_by("cluster_id").agg(
        pl.col(AMP_ID).min().alias("kept"), pl.col(AMP_ID).alias("homed")
    )
    merges = (
        chosen.explode("homed")
        .filter(pl.col("homed") != pl.col("kept"))
        .select(pl.col("homed").alias("absorbed"), "kept")
        .sort("absorbed")
    )
    cluster_ids = clusters.select("cluster_id").unique().sort("cluster_id")
    fresh = (
        cluster_ids.join(chosen, on="cluster_id", how="anti")
        .with_row_index("n")
        .with_columns(format_ids(pl.col("n") + next_id).alias("kept"))
        .select("cluster_id", "kept")
    )
    ids = pl.concat([chosen.select("cluster_id", "kept"), fresh])
    mapping = clusters.join(ids, on="cluster_id").rename({"kept": AMP_ID}).sort(keys)
    spread = overlap.group_by(AMP_ID).len()
    previous_ids = previous.get_column(AMP_ID).n_unique() if previous.height else 0
    stats = {
        "ids_kept": chosen.height,
        "ids_new": fresh.height,
        "ids_merged": merges.height,
        "ids_split": spread.filter(pl.col("len") > 1).height,
        "ids_retired": previous_ids - home.height,
    }
    return Assignment(mapping, merges, next_id + fresh.height, stats)


class IdMap:
    """The versioned record -> amp_id mapping of one storage root."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self.base = "identity"
        self.manifests = VersionedManifests(storage, f"{self.base}/ids")

    def _dir(self, version: int) -> str:
        return self.manifests.folder_of(version)

    def versions(self) -> list[int]:
        return self.manifests.versions()

    def manifest(self, version: int) -> dict:
        return self.manifests.read(version)

    def current(self) -> tuple[int, pl.DataFrame, int]:
        """(version, mapping, next id number); version 0 and an empty mapping before the first.
        The mapping carries each record's fingerprint when the version stored them."""
        version, man = self.manifests.newest()
        if not version:
            return 0, pl.DataFrame(schema=_MAP_SCHEMA), 1
        df = self.storage.read_parquet(f"{self._dir(version)}/{man['part']}")
        if man.get("polars") != pl.__version__ and "fingerprint" in df.columns:
            df = df.drop("fingerprint")  # hashes are stable within one polars version only
        return version, df, int(man["next_id"])

    def links(self, version: int) -> pl.DataFrame | None:
        """The model's links a version stored, or None (a version written before links were)."""
        if not version:
            return None
        man = self.manifest(version)
        if not man.get("edges"):
            return None
        return self.storage.read_parquet(f"{self._dir(version)}/{man['edges']}")

    def write(
        self,
        version: int,
        a: Assignment,
        extra: dict | None = None,
        fingerprints: pl.DataFrame | None = None,
        links: pl.DataFrame | None = None,
    ) -> bool:
        """Create ``version``; False when another run created it first (nothing of ours stays).
        ``fingerprints`` (source, record_id, fingerprint) and the model's ``links`` (EDGE_SCHEMA)
        let the next run re-score only what changed."""
        vdir = self._dir(version)
        token = uuid.uuid4().hex[:16]
        part = f"part-{token}.parquet"
        mapping = a.mapping.select(list(_MAP_SCHEMA))
        if fingerprints is not None:
            mapping = mapping.join(fingerprints, on=["source", "record_id"], how="left")
        self.storage.write_parquet(f"{vdir}/{part}", mapping)
        edges = f"edges-{token}.parquet" if links is not None else None
        if links is not None:
            self.storage.write_parquet(f"{vdir}/{edges}", links.select(list(EDGE_SCHEMA)))
        merges_name = f"{self.base}/merges/v{version:06d}.parquet"
        if a.merges.height:
            self.storage.write_parquet(merges_name, a.merges)
        manifest = {
            "version": version,
            "part": part,
            "next_id": a.next_id,
            "records": a.mapping.height,
            "merges": a.merges.height,
            "edges": edges,
            "polars": pl.__version__,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **a.stats,
            **(extra or {}),
        }
        if not self.manifests.create(version, manifest, [part, *([edges] if edges else [])]):
            return False
        self.manifests.prune(KEEP_VERSIONS)
        self.storage.remove_empty_folders(self.manifests.folder)
        return True

    def merges(self) -> pl.DataFrame:
        """Every merge ever made, each absorbed id pointing at the id that survives today (a chain
        a -> b, b -> c becomes a -> c, b -> c), so merges can be sent in any order."""
        names = [n for n in self.storage.list(f"{self.base}/merges") if n.endswith(".parquet")]
        if not names:
            return pl.DataFrame(schema=MERGE_SCHEMA)
        edges = (
            pl.concat([self.storage.read_parquet(n) for n in names])
            .unique("absorbed")
            .sort("absorbed")
        )
        step = edges.rename({"absorbed": "kept", "kept": "then"})
        final = edges
        while True:  # ids merge into older ids only, so chains end
            longer = (
                final.join(step, on="kept", how="left")
                .select("absorbed", pl.coalesce("then", "kept").alias("kept"))
                .sort("absorbed")
            )
            if longer.equals(final):
                return final
            final = longer
