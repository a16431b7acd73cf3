"""Link quality against known truth: the one helper the identity tests share."""

from __future__ import annotations

import polars as pl

from amp_braze.config import SourceConfig
from amp_braze.identity.synthetic import RECORD_IDS
from amp_braze.profiles.sample_data import customer_of_record

EMPTY = pl.DataFrame(schema={"source": pl.String, "record_id": pl.String, "amp_id": pl.String})


def source(name: str) -> SourceConfig:
    return SourceConfig(name=name, path="", format="parquet", customer_key=None,
                        updated_at="updated_at", priority=0, columns={}, types={},
                        key_normalize="trim", separator=",", record_id=RECORD_IDS[name])  # fmt: skip


def feeds_of(frames: dict[str, pl.DataFrame]) -> dict:
    return {n: (source(n), df.lazy()) for n, df in frames.items()}


def pairwise(table: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    """Pairwise precision, recall and F1 of the amp_ids against the true people."""
    t = table.join(truth, on=["source", "record_id"])

    def pairs(g: pl.DataFrame) -> int:
        return int((g["len"] * (g["len"] - 1) // 2).sum())

    both = pairs(t.group_by("amp_id", "person").len())
    p = both / max(pairs(t.group_by("amp_id").len()), 1)
    r = both / max(pairs(t.group_by("person").len()), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def demo_truth(table: pl.DataFrame) -> pl.DataFrame:
    """The demo generator's customer behind each record."""
    return table.select("source", "record_id", customer_of_record().alias("person"))
