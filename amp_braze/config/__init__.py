"""The amp_braze YAML configuration as pydantic models: every key, its type, default and meaning
declared once, validated before any data moves, with one ``ConfigError`` naming the key path.

The package imports only amp_braze.braze (instances, phones, identifiers), amp_braze.catalogue and
amp_braze.sql_reads; ``python -m amp_braze.config.reference`` prints the reference of every key.
"""

from amp_braze.config.currents import CurrentsConfig
from amp_braze.config.destinations import IDENTIFIERS, BrazeConfig, RateLimit
from amp_braze.config.env import HOME_VAR, expand_env
from amp_braze.config.errors import ConfigError, kind_name
from amp_braze.config.identity import (
    FIELD_KINDS,
    IDENTIFYING_KINDS,
    IdentityConfig,
    default_blocking,
)
from amp_braze.config.load import BUNDLED_CONFIG, ENV_VAR, config_path, load_config, parse_config
from amp_braze.config.model import Config
from amp_braze.config.ownership import check_syncs, managed_attributes
from amp_braze.config.rules import RULE_OPS, check_rule, exclusion_order
from amp_braze.config.segments import SegmentConfig
from amp_braze.config.sources import COLUMN_TYPES, FEED_FORMATS, KEY_NORMALIZERS, SourceConfig
from amp_braze.config.syncs import SyncConfig, SyncSpec
from amp_braze.config.values import check_cron, resolve_path

__all__ = [
    "BUNDLED_CONFIG",
    "COLUMN_TYPES",
    "ENV_VAR",
    "FEED_FORMATS",
    "FIELD_KINDS",
    "HOME_VAR",
    "IDENTIFIERS",
    "IDENTIFYING_KINDS",
    "KEY_NORMALIZERS",
    "RULE_OPS",
    "BrazeConfig",
    "Config",
    "ConfigError",
    "CurrentsConfig",
    "IdentityConfig",
    "RateLimit",
    "SegmentConfig",
    "SourceConfig",
    "SyncConfig",
    "SyncSpec",
    "check_cron",
    "check_rule",
    "check_syncs",
    "config_path",
    "default_blocking",
    "exclusion_order",
    "expand_env",
    "kind_name",
    "load_config",
    "managed_attributes",
    "parse_config",
    "resolve_path",
]
