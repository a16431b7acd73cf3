"""The amp_braze YAML configuration: its model, its loading, and its one clear error.

Every key is validated before any data moves; a bad file raises ``ConfigError`` naming the key path
(``braze.instance``, ``sources.pos.path``, ...) and what is wrong with it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from amp_braze.audiences.segment_rules import check_rule, exclusion_order
from amp_braze.braze import phones
from amp_braze.catalogue import SINGLE_SYNC
from amp_braze.config_reader import (
    REQUIRED,
    ConfigError,
    ConfigNode,
    resolve_path,
    str_map,
)
from amp_braze.destinations import (
    BrazeConfig,
    SyncSpec,
    check_cron,
    parse_braze,
    parse_destinations,
    parse_syncs,
)
from amp_braze.identity.config import IdentityConfig, parse_identity

BUNDLED_CONFIG = Path(__file__).parent / "demo" / "amp_braze.yaml"
ENV_VAR = "AMP_BRAZE_CONFIG"

FEED_FORMATS = ("csv", "parquet", "ndjson")
COLUMN_TYPES = ("string", "int", "float", "bool", "date", "datetime", "decimal", "phone")
KEY_NORMALIZERS = ("none", "trim", "lower", "email")


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
    # The region its national phone numbers are read in: sources.<name>.phone_region, else the
    # top-level phone_region.
    phone_region: str = phones.DEFAULT_REGION
    # A column naming each row's region (a till system across countries records the store's):
    # rows where it is blank or unknown use phone_region.
    phone_region_column: str | None = None

    @property
    def is_s3(self) -> bool:
        return self.path.startswith("s3://")

    @property
    def key_columns(self) -> list[str]:
        """The columns that identify a row: read as text, never typed."""
        return [c for c in (self.customer_key, self.record_id) if c]

    @property
    def phone_columns(self) -> list[str]:
        """The columns (after renames) normalised to E.164 when the feed is read: ``phone`` and
        every column typed ``phone``."""
        typed = [c for c, t in self.types.items() if t == "phone"]
        return typed if "phone" in typed else ["phone", *typed]


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
    phone_region: str = phones.DEFAULT_REGION  # national phone numbers are read in this region

    @property
    def profile_sql_text(self) -> str:
        return self.profile_sql.read_text()

    def destination_of(self, sync: SyncSpec) -> BrazeConfig:
        return self.destinations[sync.destination]


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


def phone_region(node: ConfigNode, default: str) -> str:
    """A ``phone_region`` key: an ISO 3166 alpha-2 region libphonenumber knows (any case)."""
    key = node.key("phone_region")
    if isinstance(node.data.get("phone_region"), bool):
        node.seen.add("phone_region")
        raise ConfigError(
            key,
            "YAML reads NO (Norway), YES, ON and OFF as true or false; quote the region, e.g. "
            'phone_region: "NO"',
        )
    value = node.get("phone_region", str, None)
    if value is None:
        return default
    problem = phones.region_problem(value)
    if problem:
        raise ConfigError(key, problem)
    return value.strip().upper()


def _default_phone_region(top: ConfigNode, identity: IdentityConfig | None) -> str:
    """The top-level phone_region, or the region of the older identity.default_country_code."""
    region = phone_region(top, "")
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


def _source(
    name: str,
    node: ConfigNode,
    base: Path,
    identity: bool = False,
    default_region: str = phones.DEFAULT_REGION,
) -> SourceConfig:
    raw_path = node.get("path", str)
    path = resolve_path(raw_path, base)
    fmt = node.get("format", str, None)
    if fmt is None:
        fmt = _format_of(raw_path, node.key("path"))
    elif fmt not in FEED_FORMATS:
        raise ConfigError(
            node.key("format"), f"must be one of {', '.join(FEED_FORMATS)}; got {fmt!r}"
        )
    types = str_map(node, "types")
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
        columns=str_map(node, "columns"),
        types=types,
        key_normalize=node.choice("key_normalize", KEY_NORMALIZERS, "trim"),
        separator=node.get("separator", str, ","),
        record_id=node.get("record_id", str, REQUIRED if identity else None),
        phone_region=phone_region(node, default_region),
        phone_region_column=node.get("phone_region_column", str, None),
    )
    node.done()
    return src


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
            p = Path(resolve_path(sql_file, base))
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
    exclusion_order({name: seg.exclude for name, seg in segments.items()}, node.path)
    return segments


def _sync(node: ConfigNode) -> SyncConfig:
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
    check_cron(node.key("schedule"), cfg.schedule)
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
            storage_raw if storage_raw.startswith("s3://") else resolve_path(storage_raw, base_dir)
        )
        identity = parse_identity(top.child("identity"))
        region = _default_phone_region(top, identity)
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
                str(name), srcs_node.child(str(name)), base_dir, identity is not None, region
            )
        if identity is not None:
            for i, name in enumerate(identity.one_record_per_person):
                if name not in sources:
                    raise ConfigError(
                        f"identity.one_record_per_person[{i}]",
                        f"{name!r} is not a source; sources: {', '.join(sources)}",
                    )
        profile_sql = Path(resolve_path(top.get("profile_sql", str), base_dir))
        if not profile_sql.is_file():
            raise ConfigError("profile_sql", f"file not found: {profile_sql}")
        segments = _segments(top.child("segments"), base_dir)
        sync = _sync(top.child("sync"))
        if "destinations" in top.data or "syncs" in top.data:
            if "braze" in top.data:
                raise ConfigError(
                    "braze", "give either braze: (one destination) or destinations: + syncs:"
                )
            destinations = parse_destinations(top.child("destinations", required=True))
            syncs = parse_syncs(
                top.child("syncs", required=True), destinations, segments, sync, base_dir
            )
        else:
            destinations = {SINGLE_SYNC: parse_braze(top.child("braze", required=True))}
            single = SyncSpec(SINGLE_SYNC, SINGLE_SYNC, sync.schedule, sync.timezone)
            syncs = {SINGLE_SYNC: single.with_names(destinations[SINGLE_SYNC], single=True)}
        # The phone rule of every destination reads national numbers in the top-level region.
        destinations = {n: replace(b, phone_region=region) for n, b in destinations.items()}
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
            phone_region=region,
        )
        top.done()
        check_syncs(cfg)
        return cfg
    except ConfigError as e:
        if source and not e.source:
            raise ConfigError(e.key, e.problem, source) from None
        raise


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
