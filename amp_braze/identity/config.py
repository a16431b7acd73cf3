"""The ``identity:`` section: which columns identify a person, how each is compared, and the guards."""

from __future__ import annotations

from dataclasses import dataclass

from amp_braze.config_reader import ConfigError, ConfigNode, kind_name

# How a column is normalised and compared (identity/standardize.py and identity/linkage.py).
FIELD_KINDS = ("name", "exact", "email", "phone", "date", "postcode", "address", "id", "text")
# Kinds whose single value identifies one person: a value many records share is junk.
IDENTIFYING_KINDS = ("email", "phone", "id", "exact")


@dataclass(frozen=True)
class IdentityConfig:
    fields: dict[str, str]  # column (after renames) -> kind
    blocking: tuple[tuple[str, ...], ...]
    deterministic: tuple[tuple[str, ...], ...]
    threshold: float = 0.9
    max_cluster_size: int = 500
    max_records_per_value: int = 50
    junk_values: tuple[str, ...] = ()
    retrain: bool = False
    # Superseded by phone_region (phones are read in each feed's region); still accepted: without
    # a top-level phone_region it sets it (44 -> GB), with one it must agree with it.
    default_country_code: str | None = None
    one_record_per_person: tuple[str, ...] = ()  # feeds with at most one record per person

    @property
    def columns(self) -> list[str]:
        """Every feed column identity reads: compared fields, then columns only rules use."""
        cols = list(self.fields)
        for rule in self.deterministic:
            cols += [c for c in rule if c not in cols]
        return cols


def default_blocking(fields: dict[str, str]) -> tuple[tuple[str, ...], ...]:
    """Without ``blocking:``, records that share any identifying value, date or the full name
    are compared."""
    names = tuple(c for c, k in fields.items() if k == "name")
    singles = tuple((c,) for c, k in fields.items() if k in IDENTIFYING_KINDS + ("date",))
    return ((names,) if names else ()) + singles


def _column_lists(node: ConfigNode, name: str, fields: dict[str, str] | None) -> tuple:
    raw = node.get(name, list, None)
    if raw is None:
        return ()
    rules = []
    for i, rule in enumerate(raw):
        key = f"{node.key(name)}[{i}]"
        if isinstance(rule, str):
            rule = [rule]
        if not isinstance(rule, list) or not rule:
            raise ConfigError(key, f"must be a list of column names, got {kind_name(rule)}")
        for col in rule:
            if not isinstance(col, str):
                raise ConfigError(key, f"a column name must be a string, got {kind_name(col)}")
            if fields is not None and col not in fields:
                raise ConfigError(
                    key,
                    f"{col!r} is not in identity.fields ({', '.join(fields)}); blocking compares "
                    "normalised fields",
                )
        rules.append(tuple(rule))
    return tuple(rules)


def _calling_code(node: ConfigNode) -> str | None:
    value = node.get("default_country_code", (str, int), None)
    return None if value is None else str(value).strip().lstrip("+")


def parse_identity(node: ConfigNode) -> IdentityConfig | None:
    if not node.data:
        return None
    fields_node = node.child("fields", required=True)
    fields: dict[str, str] = {}
    for col, kind in fields_node.data.items():
        if kind not in FIELD_KINDS:
            raise ConfigError(
                fields_node.key(str(col)),
                f"unknown kind {kind!r}; use one of {', '.join(FIELD_KINDS)}",
            )
        fields[str(col)] = kind
    if not fields:
        raise ConfigError(fields_node.path, "needs at least one column")
    blocking = _column_lists(node, "blocking", fields) or default_blocking(fields)
    threshold = node.get("threshold", float, 0.9)
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(node.key("threshold"), f"must be above 0 and at most 1; got {threshold}")
    junk = node.get("junk_values", list, [])
    cfg = IdentityConfig(
        fields=fields,
        blocking=blocking,
        deterministic=_column_lists(node, "deterministic", None),
        threshold=threshold,
        max_cluster_size=node.get("max_cluster_size", int, 500),
        max_records_per_value=node.get("max_records_per_value", int, 50),
        junk_values=tuple(str(v) for v in junk),
        retrain=node.get("retrain", bool, False),
        default_country_code=_calling_code(node),
        one_record_per_person=tuple(str(v) for v in node.get("one_record_per_person", list, [])),
    )
    for key in ("max_cluster_size", "max_records_per_value"):
        if getattr(cfg, key) < 2:
            raise ConfigError(node.key(key), "must be at least 2")
    node.done()
    return cfg
