"""The benchmarks drive the pipeline's own API, so they run here at a tiny size: a refactor that
breaks them fails a test instead of the next person who measures."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args, "--no-record"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _row(table: str, figure: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == figure:
            return cells[1:]
    raise AssertionError(f"no row {figure!r} in:\n{table}")


def test_delta_benchmark_plans_the_changed_users():
    out = _bench("delta", "--profiles", "20000", "--runs", "1")
    assert _row(out, "users changed / attributes changed")[0] == "200 / 200"
    assert _row(out, "data points planned")[:2] == ["200", "460,000"]


@pytest.mark.slow
def test_end_to_end_benchmark_sends_the_change():
    out = _bench("e2e", "--profiles", "20000")
    full = _row(out, "first full sync: users / data points / requests")[0]
    incremental = _row(out, "incremental, 1% changed: users / data points / requests")[0]
    recomputed = _row(out, "same change, everything recomputed: users / data points / requests")[0]
    users, points, requests = (int(v.replace(",", "")) for v in incremental.split(" / "))
    assert 0 < users < int(full.split(" / ")[0].replace(",", "")) / 50
    assert points >= users and requests >= 1
    assert recomputed == incremental  # the shortcut sends what recomputing everything sends
