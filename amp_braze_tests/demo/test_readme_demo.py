"""README's first command, exactly as a new user types it: the demo at its default size."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from amp_braze_tests.support.link_quality import demo_truth
from amp_braze_tests.support.paths import REPO


def readme_demo_command() -> str:
    """The command README runs after installing: what follows the last ``&&`` of its first
    shell block (the install part is what CI itself does before the tests)."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)\n```", text, re.S)
    assert block, "README.md has no bash block"
    first = block.group(1).strip().splitlines()[0]
    command = first.split("&&")[-1].strip()
    assert command.startswith("amp-braze demo"), first
    return command


@pytest.mark.slow
def test_the_readme_demo_command_runs_at_its_default_size(tmp_path):
    command = readme_demo_command()
    bin_dir = str(Path(sys.executable).parent)  # where pip put the amp-braze console script
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.run(
        command, shell=True, capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "generating sample feeds for 10,000 customers" in proc.stdout  # the default size
    # us: attributes and the newsletter's subscription-group states; eu: attributes
    assert re.search(
        r"emulator us: .* users and [0-9,]+ subscription-group states: EQUAL", proc.stdout
    )
    assert re.search(r"emulator eu: .* users: EQUAL", proc.stdout)
    assert proc.stdout.count("events once: EQUAL") == 1
    tables = tmp_path / ".amp_braze_demo/.amp_braze/storage/tables"
    clusters = pl.read_parquet(tables / "identity_clusters.parquet")
    people = clusters.join(demo_truth(clusters), on=["source", "record_id"])
    assert people["person"].n_unique() == 10_000
    per_id = people.group_by("amp_id").agg(pl.col("person").n_unique())["person"]
    per_person = people.group_by("person").agg(pl.col("amp_id").n_unique())["amp_id"]
    assert per_id.max() == 1  # nobody merged with someone else
    # About 4% of the demo's customers share no email, phone or loyalty number between their
    # records (tests/identity/test_sweep.py holds the same floor at every size).
    assert (per_person > 1).mean() < 0.04
    ids = clusters["amp_id"].n_unique()
    assert f"resolved into {ids:,} people (amp_id)" in proc.stdout
