"""Identity scoring in pieces (``identity.score_chunks``): about 1M records from three generated
feeds, the model trained once, then every blocked pair scored in one ``predict()`` and in N x N
pieces (``predict_chunk``), each scoring in a fresh process so that its peak memory is its own.
The two sets of links are compared pair by pair before any figure is reported."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from amp_braze.identity import training
from amp_braze.identity.records import prepare
from amp_braze.identity.synthetic import CONFIG, TUNING, generate
from benchmarks.harness import Row, report
from benchmarks.identity import _feeds

# One scoring in a process of its own: the records and the model from files, the links to a file,
# its seconds and peak memory (VmHWM starts afresh at exec) on stdout.
SCORE = """
import json, sys, time
import polars as pl
from amp_braze.identity import linkage
from amp_braze.identity.synthetic import CONFIG
from pathlib import Path
model = json.loads(open(sys.argv[2]).read())
cfg = CONFIG.model_copy(update={"score_chunks": int(sys.argv[4])})
t = time.perf_counter()
if len(sys.argv) > 5:  # one piece, as an identity_score_<i>_<j> step scores it (from the file)
    left, right = map(int, sys.argv[5].split(","))
    links = linkage.score_piece(Path(sys.argv[1]), cfg, model, left, right)
else:
    links = linkage.score(pl.read_parquet(sys.argv[1]), cfg, model)
seconds = time.perf_counter() - t
links.write_parquet(sys.argv[3])
from benchmarks.harness import peak_rss_mb  # VmHWM: ru_maxrss would carry the parent's over exec
print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_mb()}))
"""


def _score(folder: Path, chunks: int, piece: str = "") -> tuple[dict, pl.DataFrame]:
    out = folder / f"links{chunks}_{piece.replace(',', '_')}.parquet"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCORE,
            str(folder / "records.parquet"),
            str(folder / "model.json"),
            str(out),
            str(chunks),
            *([piece] if piece else []),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures, pl.read_parquet(out)


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks identity-chunks")
    p.add_argument("--people", type=int, default=510_000, help="people behind the feeds")
    p.add_argument("--chunks", type=int, default=4, help="N: the pieces are N x N")
    p.add_argument(
        "--steps",
        action="store_true",
        help="also each piece in a process of its own, as identity_score steps run",
    )
    p.add_argument(
        "--no-whole",
        action="store_true",
        help="skip one predict() (at 5M it needs about 11 GB): pieces against pieces",
    )
    p.add_argument(
        "--only-steps", action="store_true", help="with --steps, skip the pieces in one process"
    )
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)

    syn = generate(a.people, 99, TUNING)
    records, _ = prepare(_feeds(syn.feeds), CONFIG)
    t = time.perf_counter()
    model = training.train(records.table, CONFIG).model
    train_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="amp-identity-chunks-") as tmp:
        folder = Path(tmp)
        records.table.write_parquet(folder / "records.parquet")
        (folder / "model.json").write_text(json.dumps(model))
        n = a.chunks
        one, whole = _score(folder, 1) if not a.no_whole else ({}, None)
        chunked, pieces = _score(folder, n) if not a.only_steps else ({}, None)
        steps = {}
        if a.steps:
            for i in range(n):
                for j in range(n):
                    steps[(i, j)] = _score(folder, n, f"{i},{j}")
    pair = ["unique_id_l", "unique_id_r"]
    step_links = pl.concat([links for _, links in steps.values()]) if steps else None
    reference = next(x for x in (whole, pieces, step_links) if x is not None)
    compared = {"pieces": pieces, "piece steps": step_links}
    compared = {k: v for k, v in compared.items() if v is not None}
    a_ = reference.sort(pair)
    rows = [Row("records scored", records.table.height, unit="records")]
    for what, links in compared.items():
        b_ = links.sort(pair)
        same_pairs = a_.height == b_.height and a_.select(pair).equals(b_.select(pair))
        diff = (
            (a_["match_probability"] - b_["match_probability"]).abs().max() if same_pairs else None
        )
        assert same_pairs and diff is not None and diff < 1e-9, f"the {what}' links differ"
        against = "one predict" if whole is not None else "pieces in one process"
        if whole is None and pieces is None:
            against = "itself: nothing else scored"
        rows += [
            Row(f"links at or above the threshold ({against} / {what})",
                f"{a_.height:,} / {b_.height:,}", goal="equal"),
            Row(f"largest difference of a link's match probability ({what})", f"{diff:.1e}"),
        ]  # fmt: skip
    rows += (
        []
        if not chunked
        else [
            Row(
                f"scoring in {n} x {n} pieces in one process: peak memory (one predict(): baseline)",
                round(chunked["peak_mb"]),
                round(one["peak_mb"]) if one else "",
                "MB",
            ),
            Row(
                f"scoring in {n} x {n} pieces in one process: seconds (one predict(): baseline)",
                round(chunked["seconds"], 1),
                round(one["seconds"], 1) if one else "",
                "s",
            ),
        ]
    )
    if steps:
        heaviest = max(steps, key=lambda k: steps[k][0]["peak_mb"])
        rows += [
            Row(f"each piece a step in its own process: heaviest step's peak (piece "
                f"{heaviest[0]} x {heaviest[1]})", round(steps[heaviest][0]["peak_mb"]),
                round(one["peak_mb"]) if one else "", "MB", "<= 4,096 MB at 5M records"),
            Row(f"each piece a step in its own process: {n * n} steps' seconds added up",
                round(sum(f["seconds"] for f, _ in steps.values()), 1),
                round(one["seconds"], 1) if one else "", "s"),
        ]  # fmt: skip
    notes = (
        f"{a.people:,} people in three generated feeds (seed 99, the tuning mix), the demo's "
        f"identity fields and blocking; the model trained once ({train_s:.1f} s, not timed "
        "above) and every scoring run with it in a fresh process (its peak memory includes the "
        "interpreter): one predict() and the pieces in one process read the prepared records "
        "from Parquet into polars; a piece step's DuckDB reads the file itself, as the "
        "identity_score steps do."
    )
    report(
        "Identity scoring in pieces",
        " ".join(["identity-chunks", *argv]),
        rows,
        notes,
        record=not a.no_record,
    )
