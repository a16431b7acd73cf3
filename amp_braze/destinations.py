"""Braze destinations and the syncs to them: the ``braze:`` / ``destinations:`` and ``syncs:``
sections of the configuration, read key by key like the rest of it."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from amp_braze.braze.instances import INSTANCES, check_endpoint
from amp_braze.catalogue import SyncNames, destination_key, sync_names
from amp_braze.config_reader import ConfigError, ConfigNode, kind_name, resolve_path, str_map

if TYPE_CHECKING:
    from amp_braze.config import SegmentConfig, SyncConfig

IDENTIFIERS = ("external_id", "braze_id", "user_alias")


@dataclass(frozen=True)
class RateLimit:
    requests: int = 3000
    per_seconds: float = 3.0

    @property
    def per_second(self) -> float:
        return self.requests / self.per_seconds


@dataclass(frozen=True)
class BrazeConfig:
    """One Braze workspace (a destination) and how amp_braze talks to it."""

    instance: str | None = None  # one of instance / rest_endpoint
    rest_endpoint: str | None = None
    identifier: str = "external_id"
    update_existing_only: bool = False
    on_removed_user: str = "ignore"
    segment_attributes: str = "boolean"
    segment_prefix: str = "amp_"
    segment_array_attribute: str = "amp_segments"
    rate_limit: RateLimit = field(default_factory=RateLimit)
    columns: dict[str, str] = field(default_factory=dict)
    shadowed_fields: str = "error"
    unset_removed_attributes: bool = False
    max_rejected_share: float = 0.01
    concurrency: int = 8
    objects_per_request: int = 75
    timeout_seconds: float = 30.0
    max_retries: int = 6
    max_wait_seconds: float = 900.0  # the most a sync waits out rate limiting (429s), in total
    max_consecutive_failures: int = 20  # failed requests in a row before a sync stops
    name: str = "braze"  # the destination's name (the key under destinations:)
    api_key_env: str = "BRAZE_API_KEY"  # the environment variable holding its API key
    # The region national phone numbers are read in by the phone rule: the top-level
    # phone_region (set by parse_config; not a key of its own).
    phone_region: str = "US"

    def __post_init__(self) -> None:
        if self.instance is None and self.rest_endpoint is None:
            raise ValueError("a Braze destination needs an instance or a rest_endpoint")

    def segment_attribute(self, segment: str) -> str:
        """The boolean attribute that carries one segment's membership in this workspace."""
        return f"{self.segment_prefix}{segment}"

    def segment_attribute_names(self, segments: list[str] | tuple[str, ...]) -> list[str]:
        """The attributes that carry these segments: a boolean each, or the one array."""
        if self.segment_attributes == "boolean":
            return [self.segment_attribute(s) for s in segments]
        return [self.segment_array_attribute] if segments else []


@dataclass(frozen=True)
class SyncSpec:
    """One sync: what it sends to which destination, and when. An *orchestration* sends a whole
    table (the profile table, or its own ``sql``); a *campaign* sends the members of an
    ``audience`` (minus ``exclude``) with the ``attributes`` it names."""

    name: str
    destination: str
    schedule: str
    timezone: str
    sql: Path | None = None
    audience: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    attributes: tuple[str, ...] | None = None  # None: every column of its table
    segments: tuple[str, ...] | None = None  # segment attributes sent; None: every segment
    names: SyncNames | None = None  # set when the configuration loads (see ``with_names``)

    def with_names(self, destination: BrazeConfig, single: bool = False) -> SyncSpec:
        """This sync with its names (``single``: the braze: + sync: shape, whose names and state
        stay as they always were)."""
        key = destination_key(
            destination.instance, destination.rest_endpoint, destination.identifier
        )
        names = sync_names(self.name, self.destination, key, single, self.sql is not None)
        return replace(self, names=names)


def parse_rate_limit(node: ConfigNode) -> RateLimit:
    rl = RateLimit(
        requests=node.get("requests", int, 3000), per_seconds=node.get("per_seconds", float, 3.0)
    )
    node.done()
    if rl.requests <= 0:
        raise ConfigError(node.key("requests"), "must be positive")
    if rl.per_seconds <= 0:
        raise ConfigError(node.key("per_seconds"), "must be positive")
    return rl


def parse_braze(node: ConfigNode, name: str = "braze") -> BrazeConfig:
    instance = node.get("instance", str, None)
    rest_endpoint = node.get("rest_endpoint", str, None)
    if instance is not None and instance.upper() not in INSTANCES:
        close = difflib.get_close_matches(instance.upper(), INSTANCES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(
            node.key("instance"),
            f"unknown Braze instance {instance!r}{hint}; known: {', '.join(INSTANCES)}",
        )
    if rest_endpoint is not None:
        problem = check_endpoint(rest_endpoint)
        if problem:
            raise ConfigError(node.key("rest_endpoint"), problem)
    if instance is None and rest_endpoint is None:
        raise ConfigError(node.key("instance"), "is required (or give rest_endpoint)")
    if instance is not None and rest_endpoint is not None:
        raise ConfigError(
            node.key("rest_endpoint"), "give either instance or rest_endpoint, not both"
        )
    cfg = BrazeConfig(
        instance=instance.upper() if instance else None,
        rest_endpoint=rest_endpoint,
        identifier=node.choice("identifier", IDENTIFIERS, "external_id"),
        update_existing_only=node.get("update_existing_only", bool, False),
        on_removed_user=node.choice("on_removed_user", ("ignore", "unset"), "ignore"),
        segment_attributes=node.choice("segment_attributes", ("boolean", "array"), "boolean"),
        segment_prefix=node.get("segment_prefix", str, "amp_"),
        segment_array_attribute=node.get("segment_array_attribute", str, "amp_segments"),
        rate_limit=parse_rate_limit(node.child("rate_limit")),
        columns=str_map(node, "columns"),
        shadowed_fields=node.choice("shadowed_fields", ("error", "warn"), "error"),
        unset_removed_attributes=node.get("unset_removed_attributes", bool, False),
        max_rejected_share=node.get("max_rejected_share", float, 0.01),
        concurrency=node.get("concurrency", int, 8),
        objects_per_request=node.get("objects_per_request", int, 75),
        timeout_seconds=node.get("timeout_seconds", float, 30.0),
        max_retries=node.get("max_retries", int, 6),
        max_wait_seconds=node.get("max_wait_seconds", float, 900.0),
        max_consecutive_failures=node.get("max_consecutive_failures", int, 20),
        name=name,
        api_key_env=node.get("api_key_env", str, "BRAZE_API_KEY"),
    )
    node.done()
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", cfg.api_key_env):
        raise ConfigError(node.key("api_key_env"), "must be an environment variable name")
    if cfg.max_wait_seconds < 0:
        raise ConfigError(node.key("max_wait_seconds"), "must be 0 or more")
    if cfg.max_consecutive_failures < 1:
        raise ConfigError(node.key("max_consecutive_failures"), "must be at least 1")
    if not 1 <= cfg.objects_per_request <= 75:
        raise ConfigError(
            node.key("objects_per_request"), "must be between 1 and 75 (Braze's limit)"
        )
    if not 0 <= cfg.max_rejected_share <= 1:
        raise ConfigError(node.key("max_rejected_share"), "must be between 0 and 1")
    if not 1 <= cfg.concurrency <= 64:
        raise ConfigError(node.key("concurrency"), "must be between 1 and 64")
    if not re.fullmatch(r"[A-Za-z0-9_]*", cfg.segment_prefix):
        raise ConfigError(node.key("segment_prefix"), "may hold only letters, digits and _")
    return cfg


def check_cron(key: str, expr: str) -> None:
    """Dagster's own judgement of a cron expression (through its public ScheduleDefinition), so a
    schedule the file names is one Dagster will run."""
    import dagster as dg

    try:
        dg.ScheduleDefinition(name="check", cron_schedule=expr, job_name="check")
    except dg.DagsterInvalidDefinitionError:
        raise ConfigError(key, f"{expr!r} is not a valid cron expression") from None


NAME = r"[A-Za-z][A-Za-z0-9_]*"


def parse_destinations(node: ConfigNode) -> dict[str, BrazeConfig]:
    if not node.data:
        raise ConfigError(node.path, "needs at least one destination")
    out = {}
    for name in list(node.data):
        if not re.fullmatch(NAME, str(name)):
            raise ConfigError(
                node.key(str(name)), "a name must start with a letter: letters, digits and _"
            )
        out[str(name)] = parse_braze(node.child(str(name)), str(name))
    node.seen.update(str(n) for n in node.data)
    return out


def _name_list(node: ConfigNode, key: str, known: dict, what: str) -> tuple[str, ...] | None:
    raw = node.get(key, list, None)
    if raw is None:
        return None
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, str):
            raise ConfigError(f"{node.key(key)}[{i}]", f"must be a string, got {kind_name(item)}")
        if known is not None and item not in known:
            close = difflib.get_close_matches(item, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{node.key(key)}[{i}]", f"unknown {what} {item!r}{hint}")
        out.append(item)
    return tuple(out)


def parse_syncs(
    node: ConfigNode,
    destinations: dict[str, BrazeConfig],
    segments: dict[str, SegmentConfig],
    defaults: SyncConfig,
    base: Path,
) -> dict[str, SyncSpec]:
    if not node.data:
        raise ConfigError(node.path, "needs at least one sync")
    out = {}
    for name in list(node.data):
        key = node.key(str(name))
        if not re.fullmatch(NAME, str(name)) or str(name) == "braze_sync":
            raise ConfigError(key, "a name must start with a letter: letters, digits and _")
        n = node.child(str(name))
        dest = n.get("destination", str)
        if dest not in destinations:
            close = difflib.get_close_matches(dest, list(destinations), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(n.key("destination"), f"unknown destination {dest!r}{hint}")
        sql = n.get("sql", str, None)
        sql_path = Path(resolve_path(sql, base)) if sql else None
        if sql_path is not None and not sql_path.is_file():
            raise ConfigError(n.key("sql"), f"file not found: {sql_path}")
        spec = SyncSpec(
            name=str(name),
            destination=dest,
            schedule=n.get("schedule", str, defaults.schedule),
            timezone=n.get("timezone", str, defaults.timezone),
            sql=sql_path,
            audience=_name_list(n, "audience", segments, "segment") or (),
            exclude=_name_list(n, "exclude", segments, "segment") or (),
            attributes=_name_list(n, "attributes", None, "attribute"),
            segments=_name_list(n, "segments", segments, "segment"),
        ).with_names(destinations[dest])
        n.done()
        check_cron(n.key("schedule"), spec.schedule)
        if spec.exclude and not spec.audience:
            raise ConfigError(n.key("exclude"), "needs an audience to exclude from")
        out[spec.name] = spec
    node.seen.update(str(n) for n in node.data)
    return out
