"""Which sync manages which Braze attribute: one owner per attribute of a workspace, so no two
syncs undo each other's writes (and Braze bills neither twice)."""

from __future__ import annotations

from amp_braze.braze.identifiers import identifier_columns
from amp_braze.config.errors import ConfigError
from amp_braze.config.model import Config
from amp_braze.config.syncs import SyncSpec
from amp_braze.sql_reads import output_columns


def managed_attributes(cfg: Config, spec: SyncSpec) -> set[str] | None:
    """The Braze attributes a sync manages, as far as the configuration tells (None: its query
    returns ``*``, so only the data can tell)."""
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
    """One owner per attribute and per subscription group of a workspace; one identifier kind
    over the shared table."""
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
    groups: dict[tuple[str, str], str] = {}
    for spec in cfg.syncs.values():
        for column, gid in spec.subscription_groups.items():
            other = groups.setdefault((spec.destination, gid), spec.name)
            if other != spec.name:
                raise ConfigError(
                    f"syncs.{spec.name}.subscription_groups.{column}",
                    f"subscription group {gid!r} of destination {spec.destination!r} is "
                    f"managed by both syncs {other!r} and {spec.name!r}: each would undo the "
                    "other. Leave it out of one of them",
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
