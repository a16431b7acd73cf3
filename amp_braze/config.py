"""The amp_braze YAML configuration: its model, its loading, and its one clear error.

Every key is validated before any data moves; a bad file raises ``ConfigError`` naming the key path
(``braze.instance``, ``sources.pos.path``, ...) and what is wrong with it.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from amp_braze.braze.instances import INSTANCES, check_endpoint
from amp_braze.config_reader import REQUIRED, ConfigError, ConfigNode, kind_name
from amp_braze.identity.config import IdentityConfig, parse_identity

BUNDLED_CONFIG = Path(__file__).parent / "demo" / "amp_braze.yaml"
ENV_VAR = "AMP_BRAZE_CONFIG"

FEED_FORMATS = ("csv", "parquet", "ndjson")
IDENTIFIERS = ("external_id", "braze_id", "user_alias")
COLUMN_TYPES = ("string", "int", "float", "bool", "date", "datetime", "decimal")
KEY_NORMALIZERS = ("none", "trim", "lower", "email")
RULE_OPS = (
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "is_null",
    "not_null",
    "between",
    "within_last_days",
)


@dataclass(frozen=True)
class SourceConfig:
    name: str
    path: str  # absolute local path (may be a glob) or s3:// URL
    format: str
    customer_key: str | None  # None when identity resolution links the feeds instead
    updated_at: str | None
    priority: int
    columns: dict[str, str]  # source column -> our column
    types: dict[str, str]  # our column -> type name
    key_normalize: str
    separator: str
    record_id: str | None = None  # the row's id within the feed (identity resolution)

    @property
    def is_s3(self) -> bool:
        return self.path.startswith("s3://")

    @property
    def key_columns(self) -> list[str]:
        """The columns that identify a row: read as text, never typed."""
        return [c for c in (self.customer_key, self.record_id) if c]


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

    instance: str | None = "US-03"
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

    def segment_attribute(self, segment: str) -> str:
        """The boolean attribute that carries one segment's membership in this workspace."""
        return f"{self.segment_prefix}{segment}"

    def segment_attribute_names(self, segments: list[str] | tuple[str, ...]) -> list[str]:
        """The attributes that carry these segments: a boolean each, or the one array."""
        if self.segment_attributes == "boolean":
            return [self.segment_attribute(s) for s in segments]
        return [self.segment_array_attribute] if segments else []


@dataclass(frozen=True)
class SegmentConfig:
    name: str
    sql: str | None
    rules: dict[str, Any] | None
    exclude: tuple[str, ...]
    max_change: float
    allow_large_change: bool
    description: str = ""


@dataclass(frozen=True)
class SyncConfig:
    schedule: str = "0 6 * * *"
    checkpoint_rows: int = 50_000
    timezone: str = "UTC"
    keep_state_versions: int = 3
    lease_seconds: float = 60.0  # a dead sync on another machine blocks its destination this long
    lease_wait_seconds: float = 3600.0  # the most a sync waits for another sync of its destination


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
    legacy: bool = False  # the single braze: + sync: shape (its names and state stay as they were)


@dataclass(frozen=True)
class CurrentsConfig:
    bucket: str
    prefix: str
    lookback_hours: int = 48
    minimum_interval_seconds: int = 60
    region: str = "us-east-1"


@dataclass(frozen=True)
class Config:
    path: Path | None
    base_dir: Path
    storage: str
    sources: dict[str, SourceConfig]
    profile_sql: Path
    braze: BrazeConfig  # the destination whose field rules shape braze_customer_attributes
    segments: dict[str, SegmentConfig]
    sync: SyncConfig
    currents: CurrentsConfig | None
    destinations: dict[str, BrazeConfig] = field(default_factory=dict)
    syncs: dict[str, SyncSpec] = field(default_factory=dict)
    identity: IdentityConfig | None = None

    @property
    def profile_sql_text(self) -> str:
        return self.profile_sql.read_text()

    def destination_of(self, sync: SyncSpec) -> BrazeConfig:
        return self.destinations[sync.destination]


def _resolve(path: str, base: Path) -> str:
    if path.startswith("s3://"):
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _format_of(path: str, key: str) -> str:
    lower = path.lower()
    for suffixes, fmt in (
        ((".csv", ".csv.gz", ".tsv"), "csv"),
        ((".parquet", ".pq"), "parquet"),
        ((".ndjson", ".jsonl", ".json"), "ndjson"),
    ):
        if lower.endswith(suffixes):
            return fmt
    raise ConfigError(
        key,
        f"cannot tell the format of {path!r} from its extension; set `format:` to csv, parquet or ndjson",
    )


def _str_map(node: ConfigNode, name: str) -> dict[str, str]:
    raw = node.get(name, dict, {})
    for k, v in raw.items():
        if not isinstance(v, str):
            raise ConfigError(f"{node.key(name)}.{k}", f"must be a string, got {kind_name(v)}")
    return {str(k): v for k, v in raw.items()}


def _source(name: str, node: ConfigNode, base: Path, identity: bool = False) -> SourceConfig:
    raw_path = node.get("path", str)
    path = _resolve(raw_path, base)
    fmt = node.get("format", str, None)
    if fmt is None:
        fmt = _format_of(raw_path, node.key("path"))
    elif fmt not in FEED_FORMATS:
        raise ConfigError(
            node.key("format"), f"must be one of {', '.join(FEED_FORMATS)}; got {fmt!r}"
        )
    types = _str_map(node, "types")
    for col, t in types.items():
        if t not in COLUMN_TYPES:
            raise ConfigError(
                f"{node.key('types')}.{col}",
                f"unknown type {t!r}; use one of {', '.join(COLUMN_TYPES)}",
            )
    src = SourceConfig(
        name=name,
        path=path,
        format=fmt,
        customer_key=node.get("customer_key", str, None if identity else REQUIRED),
        updated_at=node.get("updated_at", str, None),
        priority=node.get("priority", int, 0),
        columns=_str_map(node, "columns"),
        types=types,
        key_normalize=node.choice("key_normalize", KEY_NORMALIZERS, "trim"),
        separator=node.get("separator", str, ","),
        record_id=node.get("record_id", str, REQUIRED if identity else None),
    )
    node.done()
    return src


def _rate_limit(node: ConfigNode) -> RateLimit:
    rl = RateLimit(
        requests=node.get("requests", int, 3000), per_seconds=node.get("per_seconds", float, 3.0)
    )
    node.done()
    if rl.requests <= 0:
        raise ConfigError(node.key("requests"), "must be positive")
    if rl.per_seconds <= 0:
        raise ConfigError(node.key("per_seconds"), "must be positive")
    return rl


def _braze(node: ConfigNode, name: str = "braze") -> BrazeConfig:
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
        rate_limit=_rate_limit(node.child("rate_limit")),
        columns=_str_map(node, "columns"),
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


def check_rule(rule: Any, key: str) -> None:
    """Validate a rule tree's shape and ops (attributes are checked against the data's schema)."""
    if not isinstance(rule, dict):
        raise ConfigError(key, f"a rule must be a mapping, got {kind_name(rule)}")
    groups = [k for k in ("all", "any", "not") if k in rule]
    if groups:
        if len(rule) != 1:
            raise ConfigError(
                key, f"a {groups[0]!r} rule must be alone in its mapping; got {sorted(rule)}"
            )
        g = groups[0]
        if g == "not":
            check_rule(rule["not"], f"{key}.not")
            return
        items = rule[g]
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{key}.{g}", "must be a non-empty list of rules")
        for i, item in enumerate(items):
            check_rule(item, f"{key}.{g}[{i}]")
        return
    unknown = set(rule) - {"attribute", "op", "value"}
    if unknown:
        raise ConfigError(
            f"{key}.{sorted(unknown)[0]}",
            "unknown key in a condition; a condition has attribute, op and value "
            "(or use all/any/not to combine conditions)",
        )
    if not isinstance(rule.get("attribute"), str):
        raise ConfigError(f"{key}.attribute", "is required and must be a string")
    op = rule.get("op")
    if op not in RULE_OPS:
        raise ConfigError(f"{key}.op", f"unknown op {op!r}; use one of {' '.join(RULE_OPS)}")
    value = rule.get("value")
    if op in ("is_null", "not_null"):
        if "value" in rule:
            raise ConfigError(f"{key}.value", f"op {op} takes no value")
    elif "value" not in rule:
        raise ConfigError(f"{key}.value", f"op {op} needs a value")
    elif op in ("in", "not_in") and not isinstance(value, list):
        raise ConfigError(f"{key}.value", f"op {op} needs a list")
    elif op == "between" and not (isinstance(value, list) and len(value) == 2):
        raise ConfigError(f"{key}.value", "op between needs a list of two values [low, high]")
    elif op == "within_last_days" and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise ConfigError(f"{key}.value", "op within_last_days needs a number of days")
    elif op in ("contains", "starts_with") and not isinstance(value, str):
        raise ConfigError(f"{key}.value", f"op {op} needs a string")


def _segments(node: ConfigNode, base: Path) -> dict[str, SegmentConfig]:
    segments: dict[str, SegmentConfig] = {}
    for name in list(node.data):
        key = node.key(str(name))
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(name)):
            raise ConfigError(
                key, "a segment name must start with a letter and hold only letters, digits and _"
            )
        seg = node.child(str(name))
        sql = seg.get("sql", str, None)
        sql_file = seg.get("sql_file", str, None)
        if sql_file is not None:
            p = Path(_resolve(sql_file, base))
            if not p.is_file():
                raise ConfigError(seg.key("sql_file"), f"file not found: {p}")
            sql = p.read_text()
        rules = seg.get("rules", dict, None)
        if (sql is None) == (rules is None):
            raise ConfigError(key, "needs exactly one of `sql:` (or `sql_file:`) and `rules:`")
        if rules is not None:
            check_rule(rules, seg.key("rules"))
        exclude = seg.get("exclude", list, [])
        for i, ex in enumerate(exclude):
            if not isinstance(ex, str):
                raise ConfigError(f"{seg.key('exclude')}[{i}]", "must be a segment name")
        segments[str(name)] = SegmentConfig(
            name=str(name),
            sql=sql,
            rules=rules,
            exclude=tuple(exclude),
            max_change=seg.get("max_change", float, 0.5),
            allow_large_change=seg.get("allow_large_change", bool, False),
            description=seg.get("description", str, ""),
        )
        seg.done()
    for name, seg in segments.items():
        for i, ex in enumerate(seg.exclude):
            if ex not in segments:
                raise ConfigError(f"{node.key(name)}.exclude[{i}]", f"unknown segment {ex!r}")
            if ex == name:
                raise ConfigError(
                    f"{node.key(name)}.exclude[{i}]", "a segment cannot exclude itself"
                )
    _check_exclusion_cycles(segments, node)
    return segments


def _check_exclusion_cycles(segments: dict[str, SegmentConfig], node: ConfigNode) -> None:
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ConfigError(
                node.key(trail[0]), f"exclusions form a cycle: {' -> '.join(trail + [name])}"
            )
        state[name] = 1
        for ex in segments[name].exclude:
            visit(ex, trail + [name])
        state[name] = 2

    for name in segments:
        visit(name, [])


def _sync(node: ConfigNode) -> SyncConfig:
    from dagster._utils.schedules import is_valid_cron_string

    cfg = SyncConfig(
        schedule=node.get("schedule", str, "0 6 * * *"),
        checkpoint_rows=node.get("checkpoint_rows", int, 50_000),
        timezone=node.get("timezone", str, "UTC"),
        keep_state_versions=node.get("keep_state_versions", int, 3),
        lease_seconds=node.get("lease_seconds", float, 60.0),
        lease_wait_seconds=node.get("lease_wait_seconds", float, 3600.0),
    )
    node.done()
    if cfg.lease_seconds < 3:
        raise ConfigError(node.key("lease_seconds"), "must be at least 3")
    if cfg.lease_wait_seconds < 0:
        raise ConfigError(node.key("lease_wait_seconds"), "must be 0 or more")
    if not is_valid_cron_string(cfg.schedule):
        raise ConfigError(node.key("schedule"), f"{cfg.schedule!r} is not a valid cron expression")
    if cfg.checkpoint_rows < 75:
        raise ConfigError(node.key("checkpoint_rows"), "must be at least 75")
    if cfg.keep_state_versions < 2:
        raise ConfigError(
            node.key("keep_state_versions"),
            "must be at least 2 (a sync or plan may still be reading the previous version)",
        )
    return cfg


def _currents(node: ConfigNode) -> CurrentsConfig | None:
    if not node.data:
        return None
    cfg = CurrentsConfig(
        bucket=node.get("bucket", str),
        prefix=node.get("prefix", str, "").strip("/"),
        lookback_hours=node.get("lookback_hours", int, 48),
        minimum_interval_seconds=node.get("minimum_interval_seconds", int, 60),
        region=node.get("region", str, "us-east-1"),
    )
    node.done()
    if cfg.lookback_hours < 1:
        raise ConfigError(node.key("lookback_hours"), "must be at least 1")
    return cfg


def parse_config(data: Any, base_dir: Path, path: Path | None = None) -> Config:
    """Build a Config from parsed YAML; relative paths resolve against ``base_dir``."""
    source = str(path) if path else None
    try:
        top = ConfigNode(data, "")
        storage_raw = top.get("storage", str, ".amp_braze")
        storage = (
            storage_raw if storage_raw.startswith("s3://") else _resolve(storage_raw, base_dir)
        )
        identity = parse_identity(top.child("identity"))
        srcs_node = top.child("sources", required=True)
        if not srcs_node.data:
            raise ConfigError("sources", "needs at least one source feed")
        sources = {}
        for name in list(srcs_node.data):
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(name)):
                raise ConfigError(
                    srcs_node.key(str(name)),
                    "a source name must start with a letter and hold only letters, digits and _",
                )
            sources[str(name)] = _source(
                str(name), srcs_node.child(str(name)), base_dir, identity is not None
            )
        if identity is not None:
            for i, name in enumerate(identity.one_record_per_person):
                if name not in sources:
                    raise ConfigError(
                        f"identity.one_record_per_person[{i}]",
                        f"{name!r} is not a source; sources: {', '.join(sources)}",
                    )
        profile_sql = Path(_resolve(top.get("profile_sql", str), base_dir))
        if not profile_sql.is_file():
            raise ConfigError("profile_sql", f"file not found: {profile_sql}")
        segments = _segments(top.child("segments"), base_dir)
        sync = _sync(top.child("sync"))
        if "destinations" in top.data or "syncs" in top.data:
            if "braze" in top.data:
                raise ConfigError(
                    "braze", "give either braze: (one destination) or destinations: + syncs:"
                )
            destinations = _destinations(top.child("destinations", required=True))
            syncs = _syncs(
                top.child("syncs", required=True), destinations, segments, sync, base_dir
            )
        else:
            destinations = {"braze": _braze(top.child("braze", required=True))}
            syncs = {"braze": SyncSpec("braze", "braze", sync.schedule, sync.timezone, legacy=True)}
        table_syncs = [sp for sp in syncs.values() if sp.sql is None]
        primary = destinations[(table_syncs or list(syncs.values()))[0].destination]
        cfg = Config(
            path=path,
            base_dir=base_dir,
            storage=storage,
            sources=sources,
            profile_sql=profile_sql,
            braze=primary,
            segments=segments,
            sync=sync,
            currents=_currents(top.child("currents")),
            destinations=destinations,
            syncs=syncs,
            identity=identity,
        )
        top.done()
        check_syncs(cfg)
        return cfg
    except ConfigError as e:
        if source and not e.source:
            raise ConfigError(e.key, e.problem, source) from None
        raise


NAME = r"[A-Za-z][A-Za-z0-9_]*"


def _destinations(node: ConfigNode) -> dict[str, BrazeConfig]:
    if not node.data:
        raise ConfigError(node.path, "needs at least one destination")
    out = {}
    for name in list(node.data):
        if not re.fullmatch(NAME, str(name)):
            raise ConfigError(
                node.key(str(name)), "a name must start with a letter: letters, digits and _"
            )
        out[str(name)] = _braze(node.child(str(name)), str(name))
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


def _syncs(
    node: ConfigNode,
    destinations: dict[str, BrazeConfig],
    segments: dict[str, SegmentConfig],
    defaults: SyncConfig,
    base: Path,
) -> dict[str, SyncSpec]:
    from dagster._utils.schedules import is_valid_cron_string

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
        sql_path = Path(_resolve(sql, base)) if sql else None
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
        )
        n.done()
        if not is_valid_cron_string(spec.schedule):
            raise ConfigError(
                n.key("schedule"), f"{spec.schedule!r} is not a valid cron expression"
            )
        if spec.exclude and not spec.audience:
            raise ConfigError(n.key("exclude"), "needs an audience to exclude from")
        out[spec.name] = spec
    node.seen.update(str(n) for n in node.data)
    return out


def managed_attributes(cfg: Config, spec: SyncSpec) -> set[str] | None:
    """The Braze attributes a sync manages, as far as the configuration tells (None: its query
    returns ``*``, so only the data can tell)."""
    from amp_braze.braze.identifiers import identifier_columns
    from amp_braze.sql_reads import output_columns

    b = cfg.destination_of(spec)
    sent = spec.segments if spec.segments is not None else tuple(cfg.segments)
    segs = set(b.segment_attribute_names(sent))
    if spec.attributes is not None:
        return set(spec.attributes) | segs
    cols = output_columns((spec.sql or cfg.profile_sql).read_text())
    if cols is None:
        return None
    ids = set(identifier_columns(b.identifier))
    return {b.columns.get(c, c) for c in cols if c not in ids} | segs


def check_syncs(cfg: Config) -> None:
    """One owner per attribute of a workspace; one identifier kind over the shared table."""
    owners: dict[tuple[str, str], str] = {}
    for spec in cfg.syncs.values():
        for attr in sorted(managed_attributes(cfg, spec) or ()):
            other = owners.setdefault((spec.destination, attr), spec.name)
            if other != spec.name:
                raise ConfigError(
                    f"syncs.{spec.name}",
                    f"attribute {attr!r} of destination {spec.destination!r} is managed by both "
                    f"syncs {other!r} and {spec.name!r}: each would undo the other and Braze "
                    "would bill both. Leave it out of one of them (attributes:, segments:)",
                )
    kinds = {
        cfg.destination_of(sp).identifier: sp.name for sp in cfg.syncs.values() if sp.sql is None
    }
    if len(kinds) > 1:
        raise ConfigError(
            "syncs",
            "syncs over the profile table must use one identifier kind; "
            + ", ".join(f"{s!r} uses {k}" for k, s in kinds.items())
            + " (give a sync its own sql: to send another)",
        )


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
