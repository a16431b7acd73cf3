"""The code location (amp_braze.definitions): each area's own Definitions, with its resources,
merged at the root."""

from __future__ import annotations

import dagster as dg

from amp_braze.config import load_config
from amp_braze.definitions import AREAS, build_defs

EXPECTED = {
    "profiles": {"sources/pos", "customer_profiles", "braze_customer_attributes"},
    "identity": {"identity_clusters"},
    "audiences": {"segment_memberships"},
    "sync": {"profiles_us/braze_sync_plan", "profiles_us/braze_sync"},
    "currents": {"braze_currents_events", "engagement_summary"},
    "events": {"orders_us/braze_events", "orders_us/braze_events_rejections"},
}


def _keys(defs: dg.Definitions) -> set[str]:
    return {k.to_user_string() for a in defs.assets or [] for k in a.keys}


def test_each_area_loads_alone_with_the_resources_it_needs():
    cfg = load_config()  # the bundled demo: every area configured
    for area in AREAS:
        name = area.__name__.split(".")[1]
        defs = area.defs(cfg)
        # Every resource its assets and sensors name is among its own (its jobs may select
        # upstream assets of other areas: a sync's job runs from the feeds).
        alone = dg.Definitions(assets=defs.assets, sensors=defs.sensors, resources=defs.resources)
        dg.Definitions.validate_loadable(alone)
        assert EXPECTED[name] <= _keys(defs), name
    root = build_defs(cfg)
    assert _keys(root) == set().union(*(_keys(area.defs(cfg)) for area in AREAS))
    assert set(root.resources) == {"storage", "braze_us", "braze_eu", "currents"}
    # The sensor takes the Currents bucket as a typed resource; it hands out the settings.
    bucket = root.resources["currents"]
    assert (bucket.bucket, bucket.lookback_hours) == (
        cfg.currents.bucket,
        cfg.currents.lookback_hours,
    )
    sensor = root.resolve_sensor_def("braze_currents_sensor")
    assert sensor.required_resource_keys == {"currents", "storage"}


_PRELOAD = """
import amp_braze.step_preload
from amp_braze import definitions
built = definitions._prebuilt
print(built is not None, built is not None and definitions.defs() is built)
"""


def test_the_step_server_builds_the_definitions_once_and_leaves_a_bad_configuration_to_the_step(
    tmp_path,
):
    """What the forkserver of a run's steps imports (``step_preload``): with a configuration
    that loads, the steps are handed the definitions it built; with one that does not, nothing
    is built there and the step itself reports the error."""
    import os
    import subprocess
    import sys

    from amp_braze.config.load import ENV_VAR

    bad = tmp_path / "elsewhere.yaml"  # not ./amp_braze.yaml, which the demo run would load
    bad.write_text("sources: [not, a, mapping]\n")
    runs = {}
    for name, env in (("demo", {}), ("bad", {ENV_VAR: str(bad)})):
        environ = {k: v for k, v in os.environ.items() if k != ENV_VAR} | env
        done = subprocess.run(
            [sys.executable, "-c", _PRELOAD],
            env=environ,
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        runs[name] = done.stdout.split()
    assert runs == {"demo": ["True", "True"], "bad": ["False", "False"]}
