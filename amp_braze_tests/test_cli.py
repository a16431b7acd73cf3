"""The command line and the code location: dagster and dg tooling, --config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from amp_braze_tests.support.configs import MINIMAL, write_config


def test_dagster_cli_lists_the_assets(tmp_path):
    env = {
        "AMP_BRAZE_HOME": str(tmp_path),
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
    }
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "list", "-m", "amp_braze.definitions"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    listed = set(proc.stdout.split())
    assert {"sources/pos", "sources/ecommerce", "sources/loyalty", "customer_profiles"} <= listed


@pytest.mark.slow
def test_dg_project_tooling_loads_the_code_location(tmp_path):
    """`dg check defs` and `dg list defs` (Dagster's current project tooling) load the project;
    the dependency edges they report are the ones the SQL reads."""
    import json

    from amp_braze_tests.support.paths import REPO

    env = {k: v for k, v in os.environ.items() if k != "AMP_BRAZE_CONFIG"}
    env["AMP_BRAZE_HOME"] = str(tmp_path)
    dg_cli = str(Path(sys.executable).parent / "dg")
    check = subprocess.run(
        [dg_cli, "check", "defs"], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert "All definitions loaded successfully" in check.stdout + check.stderr
    listed = subprocess.run(
        [dg_cli, "list", "defs", "--json"], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    data = json.loads(listed.stdout)
    deps = {a["asset_key"]: set(a["dependency_keys"]) for a in data["assets"]}
    assert deps["braze_customer_attributes"] == {"customer_profiles", "engagement_summary"}
    assert {s["name"] for s in data["schedules"]} == {
        "profiles_us_schedule",
        "winback_eu_schedule",
        "orders_us_schedule",
    }
    # The storage and each Braze workspace are resources (shown on the UI's resource pages).
    resources = {r["name"]: r["type"] for r in data["resources"]}
    assert resources["storage"] == "amp_braze.resources.StorageResource"
    assert resources["braze_us"] == resources["braze_eu"] == "amp_braze.resources.BrazeWorkspace"


def test_the_cli_given_a_config_never_reads_the_working_directorys_file(tmp_path):
    """Importing the package builds no definitions: a broken ./amp_braze.yaml does not stop
    `amp-braze validate --config good.yaml`."""
    (tmp_path / "amp_braze.yaml").write_text("storage: [not, a, string]\n")
    good = write_config(tmp_path / "good", MINIMAL)
    (tmp_path / "good" / "pos.csv").write_text("customer_id,updated_at\n1,2026-01-01\n")
    proc = subprocess.run(
        [sys.executable, "-c", "import amp_braze.definitions, amp_braze.cli, sys; "
         "sys.exit(amp_braze.cli.main(['validate', '--config', sys.argv[1]]))", str(good)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"configuration OK: {good}" in proc.stdout
