"""Loading the configuration: which file, its ``${VAR}`` references, and each section validated in
the order the others need it, so a bad file gets one ``ConfigError`` naming the key path
(``braze.instance``, ``sources.pos.path``, ...) before any data moves."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from amp_braze.braze import phones
from amp_braze.catalogue import SINGLE_SYNC, SYNC
from amp_braze.config.currents import CurrentsConfig
from amp_braze.config.destinations import BrazeConfig
from amp_braze.config.env import expand_tree
from amp_braze.config.errors import ConfigError, from_validation, key_path, kind_name
from amp_braze.config.events import EventStream
from amp_braze.config.identity import IdentityConfig
from amp_braze.config.model import Config
from amp_braze.config.ownership import check_syncs
from amp_braze.config.scale import ScaleConfig
from amp_braze.config.section import Loading, key_problem
from amp_braze.config.segments import SegmentConfig, check_exclusions
from amp_braze.config.shardable import check_shardable
from amp_braze.config.sources import SourceConfig
from amp_braze.config.syncs import SyncConfig, SyncSpec
from amp_braze.config.values import NAME, PhoneRegion

BUNDLED_CONFIG = Path(__file__).parent.parent / "demo" / "amp_braze.yaml"
ENV_VAR = "AMP_BRAZE_CONFIG"

M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], data: Any, key: str, loading: Loading) -> M:
    try:
        return model.model_validate(data, context=loading)
    except ValidationError as e:
        raise from_validation(e, key) from None


def _optional(model: type[M], data: Any, key: str, loading: Loading) -> M | None:
    """A section that may be left out (or left empty)."""
    if data is None or data == {}:
        return None
    return _validate(model, data, key, loading)


def _mapping(data: Any, key: str) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(key or "(top level)", f"must be a mapping, got {kind_name(data)}")
    return data


def _named(
    model: type[M],
    data: Any,
    key: str,
    loading: Loading,
    what: str,
    reserved: str = "",
    empty: str = "",
) -> dict[str, M]:
    """The entries of a section keyed by name (sources, segments, destinations, syncs)."""
    entries = _mapping(data, key)
    if not entries:
        raise ConfigError(key, f"needs at least one {empty or what}")
    out = {}
    for name in entries:
        if not NAME.fullmatch(str(name)) or str(name) == reserved:
            raise ConfigError(
                key_path(key, str(name)),
                f"a {what} name must start with a letter and hold only letters, digits and _",
            )
        out[str(name)] = _validate(
            model, entries[name], key_path(key, str(name)), replace(loading, name=str(name))
        )
    return out


def _phone_region(top: dict, identity: IdentityConfig | None) -> str:
    """The top-level phone_region, or the region of the older identity.default_country_code."""
    try:
        region = TypeAdapter(PhoneRegion | None).validate_python(
            top.get("phone_region"), strict=True
        )
    except ValidationError as e:
        raise from_validation(e, "phone_region") from None
    code = identity.default_country_code if identity else None
    if code is None:
        return region or phones.DEFAULT_REGION
    implied = phones.region_of_calling_code(code) if code.isdigit() else None
    if implied is None:
        raise ConfigError(
            "identity.default_country_code",
            f"{code!r} is not a country calling code; give phone_region (e.g. GB) instead",
        )
    if region and phones.calling_code(region) != int(code):
        raise ConfigError(
            "identity.default_country_code",
            f"+{code} is not the calling code of phone_region {region} "
            f"(+{phones.calling_code(region)}); phone_region supersedes this key: remove it",
        )
    return region or implied


def _destinations_and_syncs(
    top: dict, loading: Loading, sync: SyncConfig
) -> tuple[dict[str, BrazeConfig], dict[str, SyncSpec]]:
    """Either the one ``braze:`` destination (one sync named braze, on the sync: schedule) or
    ``destinations:`` + ``syncs:``."""
    if "destinations" not in top and "syncs" not in top:
        if "braze" not in top:
            raise ConfigError("braze", "is required")
        braze = _validate(
            BrazeConfig,
            _mapping(top["braze"], "braze"),
            "braze",
            replace(loading, name=SINGLE_SYNC),
        )
        if sync.subscription_groups and braze.identifier != "external_id":
            raise ConfigError(
                "sync.subscription_groups",
                "subscription groups are sent by external_id, and braze.identifier is "
                f"{braze.identifier}",
            )
        return {SINGLE_SYNC: braze}, {SINGLE_SYNC: SyncSpec.single(sync, braze)}
    if sync.subscription_groups:
        raise ConfigError(
            "sync.subscription_groups",
            "with destinations: + syncs:, give subscription groups per sync "
            "(syncs.<name>.subscription_groups)",
        )
    if "braze" in top:
        raise ConfigError("braze", "give either braze: (one destination) or destinations: + syncs:")
    for key in ("destinations", "syncs"):
        if key not in top:
            raise ConfigError(key, "is required")
    destinations = _named(BrazeConfig, top["destinations"], "destinations", loading, "destination")
    syncs = _named(
        SyncSpec,
        top["syncs"],
        "syncs",
        replace(loading, destinations=destinations, sync=sync),
        "sync",
        reserved=SYNC,
    )
    return destinations, syncs


def _events(top: dict, loading: Loading, syncs: dict[str, SyncSpec]) -> dict[str, EventStream]:
    if not top.get("events"):
        return {}
    streams = _named(EventStream, top["events"], "events", loading, "event stream")
    for name in streams:
        if name in syncs:
            raise ConfigError(
                key_path("events", name), f"{name!r} is also a sync's name; give them their own"
            )
    return streams


def parse_config(data: Any, base_dir: Path, path: Path | None = None) -> Config:
    """Build a Config from parsed YAML; relative paths resolve against ``base_dir``."""
    try:
        return _parse(expand_tree(data), base_dir, path)
    except ConfigError as e:
        if path and not e.source:
            raise ConfigError(e.key, e.problem, str(path)) from None
        raise


def _parse(data: Any, base_dir: Path, path: Path | None) -> Config:
    top = _mapping(data, "")
    found = key_problem(Config, top)
    if found:
        raise ConfigError(*found)
    loading = Loading(base_dir=base_dir)
    identity = _optional(IdentityConfig, top.get("identity"), "identity", loading)
    region = _phone_region(top, identity)
    loading = replace(loading, identity=identity is not None, phone_region=region)
    sources = _named(
        SourceConfig, top.get("sources"), "sources", loading, "source", empty="source feed"
    )
    if identity is not None:
        for i, name in enumerate(identity.one_record_per_person):
            if name not in sources:
                raise ConfigError(
                    f"identity.one_record_per_person[{i}]",
                    f"{name!r} is not a source; sources: {', '.join(sources)}",
                )
    segments = (
        _named(SegmentConfig, top["segments"], "segments", loading, "segment")
        if top.get("segments")
        else {}
    )
    check_exclusions(segments)
    sync = _optional(SyncConfig, top.get("sync"), "sync", loading) or SyncConfig()
    loading = replace(loading, segments=tuple(segments))
    destinations, syncs = _destinations_and_syncs(top, loading, sync)
    table_syncs = [sp for sp in syncs.values() if sp.sql is None]
    primary = destinations[(table_syncs or list(syncs.values()))[0].destination]
    given = {k: top[k] for k in ("storage", "profile_sql") if top.get(k) is not None}
    try:
        cfg = Config(
            path=path,
            base_dir=base_dir,
            **given,
            sources=sources,
            phone_region=region,
            braze=primary,
            destinations=destinations,
            syncs=syncs,
            segments=segments,
            sync=sync,
            identity=identity,
            scale=_optional(ScaleConfig, top.get("scale"), "scale", loading) or ScaleConfig(),
            currents=_optional(CurrentsConfig, top.get("currents"), "currents", loading),
            events=_events(
                top,
                replace(loading, destinations=destinations, sync=sync, single="braze" in top),
                syncs,
            ),
        )
    except ValidationError as e:
        raise from_validation(e) from None
    check_syncs(cfg)
    check_shardable(cfg)
    return cfg


def config_path() -> tuple[Path, bool]:
    """Which file to load: $AMP_BRAZE_CONFIG, else ./amp_braze.yaml, else the bundled demo.

    The second value tells whether it is the bundled demo configuration."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env), False
    local = Path("amp_braze.yaml")
    if local.is_file():
        return local.resolve(), False
    return BUNDLED_CONFIG, True


def load_config(path: str | Path | None = None, base_dir: str | Path | None = None) -> Config:
    """Load and validate a configuration file; relative paths resolve against its folder.

    ``${VAR}`` and ``${VAR:-default}`` in values expand from the environment; ``${AMP_BRAZE_HOME}``
    is the working directory unless set (the bundled demo keeps its data there)."""
    if path is None:
        path, _ = config_path()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            ENV_VAR if os.environ.get(ENV_VAR) else "(file)", f"config file not found: {path}"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError("(file)", f"is not valid YAML: {e}", str(path)) from None
    if base_dir is None:
        base_dir = path.resolve().parent
    return parse_config(data, Path(base_dir).resolve(), path)
