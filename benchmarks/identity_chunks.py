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
import json, resource, sys, time
import polars as pl
from amp_braze.identity import linkage
from amp_braze.identity.synthetic import CONFIG
records = pl.read_parquet(sys.argv[1])
model = json.loads(open(sys.argv[2]).read())
cfg = CONFIG.model_copy(update={"score_chunks": int(sys.argv[4])})
t = time.perf_counter()
links = linkage.score(records, cfg, model)
seconds = time.perf_counter() - t
links.write_parquet(sys.argv[3])
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _score(folder: Path, chunks: int) -> tuple[dict, pl.DataFrame]:
    out = folder / f"links{chunks}.parquet"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCORE,
            str(folder / "records.parquet"),
            str(folder / "model.json"),
            str(out),
            str(chunks),
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
        one, whole = _score(folder, 1)
        chunked, pieces = _score(folder, a.chunks)
    pair = ["unique_id_l", "unique_id_r"]
    a_, b_ = whole.sort(pair), pieces.sort(pair)
    same_pairs = a_.height == b_.height and a_.select(pair).equals(b_.select(pair))
    diff = (a_["match_probability"] - b_["match_probability"]).abs().max() if same_pairs else None
    assert same_pairs and diff is not None and diff < 1e-9, "the pieces' links differ"
    n = a.chunks
    rows = [
        Row("records scored", records.table.height, unit="records"),
        Row(
            "links at or above the threshold (one predict / pieces)",
            f"{a_.height:,} / {b_.height:,}",
            goal="equal",
        ),
        Row("largest difference of a link's match probability", f"{diff:.1e}"),
        Row(
            f"scoring in {n} x {n} pieces: peak memory (one predict(): baseline)",
            round(chunked["peak_mb"]),
            round(one["peak_mb"]),
            "MB",
        ),
        Row(
            f"scoring in {n} x {n} pieces: seconds (one predict(): baseline)",
            round(chunked["seconds"], 1),
            round(one["seconds"], 1),
            "s",
        ),
    ]
    notes = (
        f"{a.people:,} people in three generated feeds (seed 99, the tuning mix), the demo's "
        f"identity fields and blocking; the model trained once ({train_s:.1f} s, not timed "
        "above) and both scorings run with it, each in a fresh process that reads the prepared "
        "records from Parquet (its peak memory includes them and the interpreter)."
    )
    report(
        "Identity scoring in pieces",
        " ".join(argv) or "(defaults)",
        rows,
        notes,
        record=not a.no_record,
    )
