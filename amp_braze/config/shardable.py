"""Whether a configuration can run in shards: each shard runs the profile SQL, the SQL segments
and the syncs' own queries over its own customers only, so a query whose result for one customer
depends on other customers' rows (an aggregate not grouped by the key, a window over everyone,
``ORDER BY ... LIMIT``) would give another answer split than whole. Such a configuration is
refused when it loads, naming the query and why (amp_braze.sql_reads.cross_customer)."""

from __future__ import annotations

from amp_braze.braze.identifiers import identifier_columns
from amp_braze.catalogue import ATTRIBUTES, PROFILES, profile_key
from amp_braze.config.errors import ConfigError
from amp_braze.config.model import Config
from amp_braze.sql_reads import cross_customer

# The tables each shard holds only its own customers' rows of.
SPLIT_TABLES = {PROFILES, ATTRIBUTES}


def key_columns(cfg: Config) -> set[str]:
    """Columns that name the customer: customer_profiles' key and the Braze identifiers."""
    feeds = {"amp_id"} if cfg.identity else {s.customer_key for s in cfg.profile_sources.values()}
    keys = {profile_key(feeds)}
    for b in cfg.destinations.values():
        keys |= set(identifier_columns(b.identifier))
    return keys


def queries(cfg: Config) -> list[tuple[str, str]]:
    """(key path, SQL) of every query a shard runs."""
    out = [("profile_sql", cfg.profile_sql.read_text())]
    out += [(f"segments.{n}.sql", s.sql) for n, s in cfg.segments.items() if s.sql]
    out += [(f"syncs.{n}.sql", s.sql.read_text()) for n, s in cfg.syncs.items() if s.sql]
    return out


def check_shardable(cfg: Config) -> None:
    n = cfg.scale.shards
    if n == 1:
        return
    keys = key_columns(cfg)
    for key, sql in queries(cfg):
        why = cross_customer(sql, SPLIT_TABLES, keys)
        if why:
            raise ConfigError(
                key,
                f"with scale.shards = {n} each shard runs this query over its own customers, "
                f"but {why}: split, it would give other rows than one run over everyone. Keep "
                "each row to one customer's rows, or set scale.shards: 1",
            )
