"""deploy/: what a user needs to run the same definitions on Kubernetes. No cluster can be reached
from here, so this checks what this machine allows: the files parse, Dagster validates the
instance configuration that names dagster-k8s's run launcher (each class imported and its
configuration checked against the class's own schema), and the definitions load with the
Kubernetes step executor, in 16 shards."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config

from amp_braze.config import load_config
from amp_braze.definitions import build_defs

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
REPO = DEPLOY.parent


@pytest.fixture
def pod_env(monkeypatch):
    """The environment the ConfigMap and Secret give every pod."""
    for var, value in {
        "DAGSTER_PG_HOST": "dagster-postgres.example.internal",
        "DAGSTER_PG_USER": "dagster",
        "DAGSTER_PG_PASSWORD": "secret",
        "CRM_DATABASE_URL": "postgresql://reader:pw@crm.example.internal:5432/crm",
        "BRAZE_API_KEY": "key",
    }.items():
        monkeypatch.setenv(var, value)


def test_every_file_parses():
    for path in DEPLOY.glob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text())), path


def _checked(section: dict) -> type:
    """The class a section names, with its configuration checked against the class's schema."""
    cls = getattr(importlib.import_module(section["module"]), section["class"])
    result = process_config(cls.config_type(), section.get("config") or {})
    assert result.success, (section["class"], [e.message for e in result.errors])
    return cls


def test_dagster_validates_the_instance_with_the_k8s_run_launcher(pod_env):
    config, custom = dagster_instance_config(str(DEPLOY))
    assert custom is None
    launcher = _checked(config["run_launcher"])
    from dagster_k8s import K8sRunLauncher

    assert launcher is K8sRunLauncher
    assert config["run_launcher"]["config"]["load_incluster_config"] is True
    assert _checked(config["run_coordinator"]).__name__ == "QueuedRunCoordinator"
    from dagster_postgres import DagsterPostgresStorage

    result = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert result.success, [e.message for e in result.errors]
    assert result.value["postgres_db"]["password"] == "secret"  # from the pod's environment
    assert config["concurrency"]["pools"]["default_limit"] == 1


def test_the_definitions_load_with_the_k8s_executor_in_shards(pod_env):
    cfg = load_config(DEPLOY / "amp_braze.yaml")
    assert cfg.scale.shards == 16 and cfg.scale.executor == "k8s"
    assert cfg.storage.startswith("s3://")
    defs = build_defs(cfg)
    job = defs.resolve_job_def("profiles_job")
    from dagster_k8s import k8s_job_executor

    assert job.executor_def is k8s_job_executor
    profiles = defs.resolve_assets_def("customer_profiles")
    assert len(profiles.partitions_def.get_partition_keys()) == 16
    assert defs.resolve_sensor_def("profiles_job_shards")


def test_the_helm_values_run_the_same_code_location():
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    deployment = values["dagster-user-deployments"]["deployments"][0]
    pyproject = (REPO / "pyproject.toml").read_text()
    module = re.search(r'module_name = "([^"]+)"', pyproject).group(1)
    assert deployment["dagsterApiGrpcArgs"] == ["-m", module]
    assert values["concurrency"]["pools"]["defaultLimit"] == 1
    assert values["postgresql"]["enabled"] is False


def test_the_dockerfile_copies_what_exists():
    text = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (REPO / source).exists(), source
    assert "'.[k8s]'" in text


def test_a_celery_executor_without_its_broker_is_refused(tmp_path):
    from amp_braze.config import ConfigError
    from amp_braze_tests.support.configs import MINIMAL, write_config

    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, MINIMAL + "scale: {executor: celery}\n"))
    assert info.value.key == "scale" and "celery_broker" in str(info.value)
    cfg = load_config(
        write_config(
            tmp_path, MINIMAL + "scale: {executor: celery, celery_broker: 'redis://r:6379/0'}\n"
        )
    )
    executor = build_defs(cfg).resolve_job_def("braze_sync_job").executor_def
    assert executor.name == "amp_braze_celery"
    assert cfg.scale.backend == "redis://r:6379/0"
    assert isinstance(executor, dg.ExecutorDefinition)
