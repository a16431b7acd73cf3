"""Shared benchmark plumbing: the results table, the machine description, RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from amp_braze.metadata import StepCost

RESULTS = Path(__file__).parent / "RESULTS.md"


@dataclass
class Row:
    figure: str
    amp_braze: float | str
    baseline: float | str = ""
    unit: str = ""
    goal: str = ""

    @property
    def ratio(self) -> str:
        if (
            isinstance(self.amp_braze, int | float)
            and isinstance(self.baseline, int | float)
            and self.baseline
        ):
            return f"{self.amp_braze / self.baseline:.2f}x"
        return ""


def fmt(v: float | str) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    import polars

    return (
        f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, polars {polars.__version__}"
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM where Linux has it (``ru_maxrss`` carries over
    exec, so a process spawned by a large parent would report at least the parent's size)."""
    return StepCost.peak_mb()


def table(rows: list[Row]) -> str:
    head = ["figure", "amp_braze", "baseline", "ratio", "unit", "goal"]
    body = [[r.figure, fmt(r.amp_braze), fmt(r.baseline), r.ratio, r.unit, r.goal] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in body
    ]
    return "\n".join(lines)


def report(title: str, args: str, rows: list[Row], notes: str = "", record: bool = True) -> None:
    text = table(rows)
    print(f"\n{title}\n{text}\n")
    if notes:
        print(notes)
    if not record:
        return
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with RESULTS.open("a") as f:
        f.write(f"\n### {title}: `python -m benchmarks {args}`\n\n")
        f.write(f"{stamp}, commit {commit or '?'}; {machine()}\n\n{text}\n")
        if notes:
            f.write(f"\n{notes}\n")
    print(
        f"appended to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}"
    )


def python() -> str:
    return sys.executable
