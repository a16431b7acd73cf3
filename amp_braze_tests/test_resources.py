"""The resources (amp_braze.resources): a workspace's API key as an EnvVar field, resolved by
Dagster 1.13 only for runs that use that workspace; the workspace hands out its client."""

from __future__ import annotations

import dagster as dg
import pytest

from amp_braze.resources import braze_workspace
from amp_braze_tests.support.brand import make_brand

KEY_ENV = "BRAZE_API_KEY"


def test_a_run_that_does_not_send_needs_no_braze_key(tmp_path, emulator, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    brand = make_brand(tmp_path, emulator.url, n=40)
    defs = brand.defs()
    spec = brand.config.syncs["braze"]
    instance = dg.DagsterInstance.ephemeral()
    plan_job = defs.resolve_job_def(spec.names.plan_job)
    # Dagster leaves the EnvVar of a resource no step of the run uses unresolved: planning works.
    assert plan_job.execute_in_process(instance=instance).success
    # A run that sends needs it, and says which variable is missing, before any step runs.
    with pytest.raises(dg.DagsterInvalidConfigError, match=f'"{KEY_ENV}" which is not set'):
        defs.resolve_job_def(spec.names.job).execute_in_process(instance=instance)
    assert emulator.stats()["track_requests"] == 0


def test_the_workspace_hands_out_its_client_with_the_key_from_the_environment(
    tmp_path, emulator, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, emulator.key)
    brand = make_brand(tmp_path, emulator.url, n=40, rate=50, concurrency=3)
    workspace = brand.defs().resources[brand.config.syncs["braze"].names.workspace]
    assert workspace is braze_workspace(brand.config.destination_of(brand.config.syncs["braze"]))
    assert workspace.api_key == dg.EnvVar(KEY_ENV)  # the name, never the value, in the definitions
    client = workspace.client()
    try:
        assert client.endpoint == emulator.url
        assert client.concurrency == 3 and client.retry.max_retries == 8
        assert client.pacer.interval == pytest.approx(1 / (50 * 0.98))
    finally:
        client.close()
    assert emulator.key not in repr(brand.defs().resources)
