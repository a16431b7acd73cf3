"""Records joined into clusters by Splink's clustering: connected components of the links, or,
when some feeds hold at most one record per person (``identity.one_record_per_person``), Splink's
one-to-one clustering, which adds a record to a cluster only through mutually best links and never
puts two records of such a feed in one cluster (a household sharing an email stays two people).

A cluster larger than ``max_cluster_size`` is usually a chain of weak links or a shared value that
slipped through; it is clustered again on its stronger links only (probability 0.99, 0.999, ...),
and what is still too large is split into single records. Every split is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from amp_braze.identity.linkage import SPLINK_ROW_ID, database_api

CLUSTER = "cluster_id"
_LEFT, _RIGHT = f"{SPLINK_ROW_ID}_l", f"{SPLINK_ROW_ID}_r"
_STRICTER = (0.99, 0.999, 0.9999, 0.99999)


@dataclass
class Clustered:
    clusters: pl.DataFrame  # unique_id, cluster_id, linked_by, match_probability
    oversized: pl.DataFrame  # cluster_id (first record), records: clusters that were split


def components(
    ids: pl.Series,
    edges: pl.DataFrame,
    sources: pl.DataFrame | None = None,
    one_per_person: tuple[str, ...] = (),
) -> pl.DataFrame:
    """unique_id -> cluster_id (the smallest unique_id in its cluster). ``sources``: unique_id,
    source, needed when ``one_per_person`` names feeds."""
    nodes = pl.DataFrame({SPLINK_ROW_ID: ids.cast(pl.Int64)})
    if edges.height == 0:
        return nodes.with_columns(pl.col(SPLINK_ROW_ID).alias(CLUSTER))
    pairs = edges.select(
        pl.col(_LEFT).cast(pl.Int64), pl.col(_RIGHT).cast(pl.Int64), "match_probability"
    )
    db = database_api()
    if one_per_person and sources is not None:
        from splink.internals.one_to_one_clustering import one_to_one_clustering

        src = sources.select(pl.col(SPLINK_ROW_ID).cast(pl.Int64), pl.col("source"))
        nodes = nodes.join(src, on=SPLINK_ROW_ID).rename({"source": "source_dataset"})
        for side in ("l", "r"):
            pairs = pairs.join(
                src.rename(
                    {SPLINK_ROW_ID: f"{SPLINK_ROW_ID}_{side}", "source": f"source_dataset_{side}"}
                ),
                on=f"{SPLINK_ROW_ID}_{side}",
            )
        result = one_to_one_clustering(
            nodes_table=db.register(nodes.to_arrow()),
            edges_table=db.register(pairs.to_arrow()),
            node_id_column_name=SPLINK_ROW_ID,
            source_dataset_column_name="source_dataset",
            edge_id_column_name_left=_LEFT,
            edge_id_column_name_right=_RIGHT,
            duplicate_free_datasets=list(one_per_person),
            ties_method="lowest_id",
            db_api=db,
            threshold_match_probability=None,
        )
    else:
        from splink.clustering import cluster_pairwise_predictions_at_threshold

        result = cluster_pairwise_predictions_at_threshold(
            nodes.to_arrow(),
            pairs.select(_LEFT, _RIGHT).to_arrow(),
            db_api=db,
            node_id_column_name=SPLINK_ROW_ID,
        )
    table = pl.from_arrow(result.as_duckdbpyrelation().to_arrow_table())
    assert isinstance(table, pl.DataFrame)
    return table.select(
        pl.col(SPLINK_ROW_ID).cast(pl.Int64),
        pl.col(SPLINK_ROW_ID).min().over("cluster_id").cast(pl.Int64).alias(CLUSTER),
    )


def cluster(
    ids: pl.Series,
    edges: pl.DataFrame,
    max_size: int,
    sources: pl.DataFrame | None = None,
    one_per_person: tuple[str, ...] = (),
) -> Clustered:
    """Cluster records by their links; edges: unique_id_l, unique_id_r, match_probability, rule."""
    labels = components(ids, edges, sources, one_per_person)
    sizes = labels.group_by(CLUSTER).len()
    too_big = sizes.filter(pl.col("len") > max_size)
    oversized = too_big.rename({"len": "records"}).sort("records", descending=True)
    if too_big.height:
        labels = _split(labels, edges, too_big.get_column(CLUSTER), max_size)
    return Clustered(clusters=_linked_by(labels, edges), oversized=oversized)


def _split(
    labels: pl.DataFrame, edges: pl.DataFrame, big: pl.Series, max_size: int
) -> pl.DataFrame:
    inside = labels.filter(pl.col(CLUSTER).is_in(big.implode()))
    rest = labels.filter(~pl.col(CLUSTER).is_in(big.implode()))
    members = inside.get_column(SPLINK_ROW_ID)
    sub = edges.filter(
        pl.col(_LEFT).is_in(members.implode()) & pl.col(_RIGHT).is_in(members.implode())
    )
    for threshold in _STRICTER:
        sub = sub.filter(pl.col("match_probability") >= threshold)
        relabelled = components(members, sub)
        sizes = relabelled.group_by(CLUSTER).len()
        still = sizes.filter(pl.col("len") > max_size).get_column(CLUSTER)
        if still.len() == 0:
            return pl.concat([rest, relabelled])
    # Still too large on its strongest links: no link in it is trusted.
    singles = relabelled.with_columns(
        pl.when(pl.col(CLUSTER).is_in(still.implode()))
        .then(pl.col(SPLINK_ROW_ID))
        .otherwise(pl.col(CLUSTER))
        .alias(CLUSTER)
    )
    return pl.concat([rest, singles])


def _linked_by(labels: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """Per record, its strongest link inside its cluster: the rule's name, or the probability."""
    both = pl.concat(
        [
            edges.select(
                pl.col(_LEFT).alias(SPLINK_ROW_ID),
                pl.col(_RIGHT).alias("other"),
                "match_probability",
                "rule",
            ),
            edges.select(
                pl.col(_RIGHT).alias(SPLINK_ROW_ID),
                pl.col(_LEFT).alias("other"),
                "match_probability",
                "rule",
            ),
        ]
    )
    same = (
        both.join(labels, on=SPLINK_ROW_ID)
        .join(labels.rename({SPLINK_ROW_ID: "other", CLUSTER: "other_cluster"}), on="other")
        .filter(pl.col(CLUSTER) == pl.col("other_cluster"))
    )
    best = (
        same.sort(["match_probability", "rule"], descending=[True, False], nulls_last=True)
        .group_by(SPLINK_ROW_ID)
        .agg(pl.col("rule").first().alias("linked_by"), pl.col("match_probability").first())
    )
    return labels.join(best, on=SPLINK_ROW_ID, how="left").sort(SPLINK_ROW_ID)
