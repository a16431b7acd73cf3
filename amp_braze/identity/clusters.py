"""Records joined into clusters: connected components of the links (Splink's clustering).

A cluster larger than ``max_cluster_size`` is usually a chain of weak links or a shared value that
slipped through; it is clustered again on its stronger links only (probability 0.99, 0.999, ...),
and what is still too large is split into single records. Every split is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from amp_braze.identity.linkage import ID, database_api

CLUSTER = "cluster_id"
_LEFT, _RIGHT = f"{ID}_l", f"{ID}_r"
_STRICTER = (0.99, 0.999, 0.9999, 0.99999)


@dataclass
class Clustered:
    clusters: pl.DataFrame  # unique_id, cluster_id, linked_by, match_probability
    oversized: pl.DataFrame  # cluster_id (first record), records: clusters that were split


def components(ids: pl.Series, edges: pl.DataFrame) -> pl.DataFrame:
    """unique_id -> cluster_id (the smallest unique_id in its component)."""
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    nodes = pl.DataFrame({ID: ids.cast(pl.Int64)})
    if edges.height == 0:
        return nodes.with_columns(pl.col(ID).alias(CLUSTER))
    db = database_api()
    result = cluster_pairwise_predictions_at_threshold(
        nodes.to_arrow(),
        edges.select(pl.col(_LEFT).cast(pl.Int64), pl.col(_RIGHT).cast(pl.Int64)).to_arrow(),
        db_api=db,
        node_id_column_name=ID,
    )
    table = pl.from_arrow(result.as_duckdbpyrelation().to_arrow_table())
    assert isinstance(table, pl.DataFrame)
    return table.select(
        pl.col(ID).cast(pl.Int64), pl.col(ID).min().over("cluster_id").cast(pl.Int64).alias(CLUSTER)
    )


def cluster(ids: pl.Series, edges: pl.DataFrame, max_size: int) -> Clustered:
    """Cluster records by their links; edges: unique_id_l, unique_id_r, match_probability, rule."""
    labels = components(ids, edges)
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
    members = inside.get_column(ID)
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
        .then(pl.col(ID))
        .otherwise(pl.col(CLUSTER))
        .alias(CLUSTER)
    )
    return pl.concat([rest, singles])


def _linked_by(labels: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """Per record, its strongest link inside its cluster: the rule's name, or the probability."""
    both = pl.concat(
        [
            edges.select(
                pl.col(_LEFT).alias(ID), pl.col(_RIGHT).alias("other"), "match_probability", "rule"
            ),
            edges.select(
                pl.col(_RIGHT).alias(ID), pl.col(_LEFT).alias("other"), "match_probability", "rule"
            ),
        ]
    )
    same = (
        both.join(labels, on=ID)
        .join(labels.rename({ID: "other", CLUSTER: "other_cluster"}), on="other")
        .filter(pl.col(CLUSTER) == pl.col("other_cluster"))
    )
    best = (
        same.sort(["match_probability", "rule"], descending=[True, False], nulls_last=True)
        .group_by(ID)
        .agg(pl.col("rule").first().alias("linked_by"), pl.col("match_probability").first())
    )
    return labels.join(best, on=ID, how="left").sort(ID)
