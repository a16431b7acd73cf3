"""Identity resolution: link quality against known truth, speed at 1M records, id stability.

Quality is measured on data generated with a different seed and corruption mix (``HELD_OUT``) from
the one the comparisons and thresholds were tuned on (``TUNING``). Speed: three feeds, about 1M
records, resolved end to end (normalise, train, predict, cluster, assign ids), then again with 1%
new records against the stored model and mapping. Stability: existing records whose amp_id changed
although their cluster neither merged nor split (the goal is 0).
"""

from __future__ import annotations

import argparse
import time

import polars as pl

from amp_braze.config import SourceConfig
from amp_braze.identity.records import FINGERPRINT
from amp_braze.identity.resolve import resolve
from amp_braze.identity.synthetic import CONFIG, HELD_OUT, RECORD_IDS, TUNING, Corruption, generate
from benchmarks.harness import Row, peak_rss_mb, report

EMPTY = pl.DataFrame(schema={"source": pl.String, "record_id": pl.String, "amp_id": pl.String})


def _feeds(feeds: dict[str, pl.DataFrame]) -> dict:
    def src(name: str) -> SourceConfig:
        return SourceConfig(name=name, path="", format="parquet", customer_key=None,
                            updated_at="updated_at", priority=0, columns={}, types={},
                            key_normalize="trim", separator=",", record_id=RECORD_IDS[name])  # fmt: skip

    return {n: (src(n), df.lazy()) for n, df in feeds.items()}


def quality(table: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    t = table.join(truth, on=["source", "record_id"])

    def pairs(g: pl.DataFrame) -> int:
        return int((g["len"] * (g["len"] - 1) // 2).sum())

    both = pairs(t.group_by("amp_id", "person").len())
    predicted, true = pairs(t.group_by("amp_id").len()), pairs(t.group_by("person").len())
    p, r = both / predicted, both / true
    split = t.group_by("person").agg(pl.col("amp_id").n_unique() > 1).get_column("amp_id").mean()
    merged = t.group_by("amp_id").agg(pl.col("person").n_unique() > 1).get_column("person").mean()
    return {
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r),
        "split": split,
        "merged": merged,
    }


def _quality_rows(label: str, n: int, seed: int, mix: Corruption) -> list[Row]:
    syn = generate(n, seed, mix)
    result = resolve(_feeds(syn.feeds), CONFIG, EMPTY, 1)
    q = quality(result.table, syn.truth)
    return [
        Row(
            f"{label}: pairwise F1 ({result.table.height:,} records)",
            round(q["f1"], 4),
            goal=">= 0.99",
        ),
        Row(f"{label}: precision / recall", f"{q['precision']:.4f} / {q['recall']:.4f}"),
        Row(f"{label}: people split across clusters", f"{q['split']:.2%}"),
        Row(f"{label}: clusters merging people", f"{q['merged']:.2%}"),
    ]


def stability(before: pl.DataFrame, after: pl.DataFrame, merges: pl.DataFrame) -> tuple[int, int]:
    """(existing records whose id changed without a merge or split, existing records)."""
    keys = ["source", "record_id"]
    both = before.select(*keys, pl.col("amp_id").alias("old")).join(
        after.select(*keys, pl.col("amp_id").alias("new")), on=keys
    )
    split = both.group_by("old").agg(pl.col("new").n_unique() > 1).filter(pl.col("new"))["old"]
    changed = both.filter(
        (pl.col("old") != pl.col("new"))
        & ~pl.col("old").is_in(merges["absorbed"].implode())
        & ~pl.col("old").is_in(split.implode())
    )
    return changed.height, both.height


def _link_difference(a: pl.DataFrame, b: pl.DataFrame) -> int:
    """Links (record pairs, either order) in one set and not the other."""

    def keys(links: pl.DataFrame) -> pl.DataFrame:
        left = pl.concat_str("source_l", pl.lit(":"), "record_id_l")
        right = pl.concat_str("source_r", pl.lit(":"), "record_id_r")
        return links.select(
            pl.min_horizontal(left, right).alias("a"), pl.max_horizontal(left, right).alias("b")
        )

    ka, kb = keys(a), keys(b)
    return (
        ka.join(kb, on=["a", "b"], how="anti").height
        + kb.join(ka, on=["a", "b"], how="anti").height
    )


DAGSTER_CONFIG = """
storage: {home}/storage
sources:
{sources}
identity:
  fields: {{given_name: name, surname: name, date_of_birth: date, email: email, phone: phone,
           postcode: postcode, address_1: address}}
  blocking: [[surname, given_name], [date_of_birth, surname], [email], [phone], [postcode]]
  deterministic: [[loyalty_id]]
  one_record_per_person: [pos, crm]
profile_sql: {home}/profile.sql
braze: {{rest_endpoint: "http://127.0.0.1:9"}}
"""


def through_dagster(feeds: dict[str, pl.DataFrame], grown: dict[str, pl.DataFrame]) -> dict:
    """The sources and identity_clusters assets through dagster.materialize: the first run, then
    the run after 1% new records. Per run: wall and each step's seconds."""
    import tempfile
    from pathlib import Path

    import dagster as dg

    from amp_braze.config import load_config
    from amp_braze.definitions import build_defs

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "profile.sql").write_text("SELECT amp_id AS external_id FROM customer_profiles")
        sources = "\n".join(
            f"  {n}: {{path: {home}/{n}.parquet, record_id: {RECORD_IDS[n]}, updated_at: updated_at}}"
            for n in feeds
        )
        (home / "c.yaml").write_text(DAGSTER_CONFIG.format(home=home, sources=sources))
        defs = build_defs(load_config(home / "c.yaml"))
        keys = [*(f"sources/{n}" for n in feeds), "identity_clusters"]
        assets = [a for a in defs.assets if any(k.to_user_string() in keys for k in a.keys)]
        instance = dg.DagsterInstance.ephemeral()
        for label, data in (("first", feeds), ("1% new", grown)):
            for n, df in data.items():
                df.write_parquet(home / f"{n}.parquet")
            t = time.perf_counter()
            r = dg.materialize(assets, resources=defs.resources, instance=instance)
            wall = time.perf_counter() - t
            steps = {
                st.step_key: (st.end_time or 0) - (st.start_time or 0)
                for st in instance.get_run_step_stats(r.run_id)
            }
            out[label] = (wall, steps)
    return out


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks identity")
    p.add_argument(
        "--people", type=int, default=510_000, help="people behind the speed run's feeds"
    )
    p.add_argument("--quality-people", type=int, default=50_000)
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    rows = _quality_rows("held-out mix (seed 2024)", a.quality_people, 2024, HELD_OUT)
    rows += _quality_rows("tuning mix (seed 1)", a.quality_people, 1, TUNING)

    syn = generate(a.people, 99, TUNING)
    t = time.perf_counter()
    first = resolve(_feeds(syn.feeds), CONFIG, EMPTY, 1)
    full_s = time.perf_counter() - t
    records = first.table.height
    q = quality(first.table, syn.truth)
    # 1% new records: new people's records, appended to the same feeds.
    extra = generate(max(1, a.people // 100), 7, TUNING)
    grown = {
        n: pl.concat([df, extra.feeds[n].with_columns(pl.col(RECORD_IDS[n]) + "-new")])
        for n, df in syn.feeds.items()
    }
    prints = first.records.table.select("source", "record_id", FINGERPRINT)
    prev = first.assignment.mapping.drop("cluster_id").join(prints, on=["source", "record_id"])
    t = time.perf_counter()
    second = resolve(
        _feeds(grown), CONFIG, prev, first.assignment.next_id, first.model, first.links
    )
    rerun_s = time.perf_counter() - t
    t = time.perf_counter()
    relink = resolve(
        _feeds(grown), CONFIG, prev.drop(FINGERPRINT), first.assignment.next_id, first.model
    )
    relink_s = time.perf_counter() - t
    link_diff = _link_difference(second.links, relink.links)
    both = second.table.select("source", "record_id", "amp_id").join(
        relink.table.select("source", "record_id", "amp_id"), on=["source", "record_id"]
    )
    id_diff = int((both["amp_id"] != both["amp_id_right"]).sum())
    moved, existing = stability(prev, second.assignment.mapping, second.assignment.merges)
    dagster_runs = through_dagster(syn.feeds, grown)
    for label, (wall, steps) in dagster_runs.items():
        rows.append(
            Row(
                f"through Dagster, {label}: identity_clusters step / run wall",
                f"{steps['identity_clusters']:.1f} s / {wall:.1f} s",
                goal="<= 60 s (1% new)" if label != "first" else "",
            )
        )
    rows += [
        Row(
            f"resolve {records:,} records, 3 feeds (train included)",
            round(full_s, 1),
            unit="s",
            goal="<= 120 s",
        ),  # fmt: skip
        Row("  of which", ", ".join(f"{k} {v:.1f}" for k, v in first.seconds.items())),
        Row(
            "  links: deterministic / model",
            f"{first.deterministic_links:,} / {first.model_links:,}",
        ),
        Row("  pairwise F1 at this size", round(q["f1"], 4)),
        Row(
            f"rerun with 1% new records ({second.table.height - records:,}), linked against the "
            "rest (baseline: a full re-link)",
            round(rerun_s, 1),
            round(relink_s, 1),
            "s",
            "<= 60 s",
        ),
        Row("  of which", ", ".join(f"{k} {v:.1f}" for k, v in second.seconds.items())),
        Row("  records scored / all", f"{second.rescored_records:,} / {second.table.height:,}"),
        Row(
            "  against the full re-link: links in only one / records with another amp_id",
            f"{link_diff:,} / {id_diff:,}",
            unit=f"of {relink.links.height:,} links",
        ),
        Row(
            "  ids kept / new / merged / split",
            "{ids_kept:,} / {ids_new:,} / {ids_merged:,} / {ids_split:,}".format(
                **second.assignment.stats
            ),
        ),  # fmt: skip
        Row(
            "existing records whose id moved without a merge or split",
            moved,
            unit=f"of {existing:,}",
            goal="0",
        ),  # fmt: skip
        Row(
            "peak memory (whole process, data generation included)",
            round(peak_rss_mb()),
            unit="MB",
            goal="<= 8,192 MB",
        ),  # fmt: skip
    ]
    report("identity", " ".join(argv) or "(defaults)", rows, record=not a.no_record)
