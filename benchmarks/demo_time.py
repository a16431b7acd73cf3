"""README's first command, timed: ``amp-braze demo`` at its default size, with and without the
install before it.

"with install" runs README's whole first line (make a virtual environment, install from the lock,
run the demo) in a copy of this project's files, as a new user would, with pip's download cache
as this machine has it (say so when recording: a cold cache adds the downloads). "demo only" runs
``amp-braze demo`` in this environment, from an empty folder.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Row, report

REPO = Path(__file__).resolve().parent.parent


def readme_first_command() -> str:
    block = re.search(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    assert block, "README.md has no bash block"
    return block.group(1).strip().splitlines()[0]


def _timed(command: str, cwd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{command!r} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return took


def _project_copy(into: Path) -> Path:
    """The project's files (not .git, not virtual environments or demo output)."""
    ignore = shutil.ignore_patterns(".git", ".venv", ".ci-venv", ".amp_braze*", "__pycache__",
                                    "*.egg-info", ".pytest_cache", ".ruff_cache")  # fmt: skip
    return Path(shutil.copytree(REPO, into / "amp_braze", ignore=ignore))


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks demo")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--no-install", action="store_true", help="skip the fresh-install runs")
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)
    bin_dir = str(Path(sys.executable).parent)
    demo_only = []
    for _ in range(a.runs):
        with tempfile.TemporaryDirectory() as d:
            demo_only.append(_timed(f'PATH="{bin_dir}:$PATH" amp-braze demo', Path(d)))
    rows = [
        Row(
            "amp-braze demo, default size (10,000 customers), demo only",
            round(statistics.median(demo_only), 1),
            unit="s (" + ", ".join(f"{s:.1f}" for s in demo_only) + ")",
        )
    ]
    if not a.no_install:
        line = readme_first_command()
        whole = []
        for _ in range(a.runs):
            with tempfile.TemporaryDirectory() as d:
                whole.append(_timed(line, _project_copy(Path(d))))
        rows.append(
            Row(
                "README's first command (venv, install from the lock, demo), warm pip cache",
                round(statistics.median(whole), 1),
                unit="s (" + ", ".join(f"{s:.1f}" for s in whole) + ")",
            )
        )
    report("demo", " ".join(argv) or "(defaults)", rows, record=not a.no_record)
