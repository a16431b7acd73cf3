"""The grammar of rule segments ("no SQL"): nested all/any/not of {attribute, op, value}, and the
order exclusions between segments impose. Checked when the configuration loads; compiling a rule
against the data (amp_braze.audiences.segment_rules) checks its attributes and value types."""

from __future__ import annotations

from typing import Any

from amp_braze.config.errors import ConfigError, key_path, kind_name

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


def check_rule(rule: Any, key: str = "") -> None:
    """Validate a rule tree's shape and ops (attributes are checked against the data's schema);
    errors name the key below ``key`` (``rules.all[0].value``)."""
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
            check_rule(rule["not"], key_path(key, "not"))
            return
        items = rule[g]
        if not isinstance(items, list) or not items:
            raise ConfigError(key_path(key, g), "must be a non-empty list of rules")
        for i, item in enumerate(items):
            check_rule(item, key_path(key, g, i))
        return
    unknown = set(rule) - {"attribute", "op", "value"}
    if unknown:
        raise ConfigError(
            key_path(key, sorted(unknown)[0]),
            "unknown key in a condition; a condition has attribute, op and value "
            "(or use all/any/not to combine conditions)",
        )
    if not isinstance(rule.get("attribute"), str):
        raise ConfigError(key_path(key, "attribute"), "is required and must be a string")
    op = rule.get("op")
    if op not in RULE_OPS:
        raise ConfigError(
            key_path(key, "op"), f"unknown op {op!r}; use one of {' '.join(RULE_OPS)}"
        )
    value, at = rule.get("value"), key_path(key, "value")
    if op in ("is_null", "not_null"):
        if "value" in rule:
            raise ConfigError(at, f"op {op} takes no value")
    elif "value" not in rule:
        raise ConfigError(at, f"op {op} needs a value")
    elif op in ("in", "not_in") and not isinstance(value, list):
        raise ConfigError(at, f"op {op} needs a list")
    elif op == "between" and not (isinstance(value, list) and len(value) == 2):
        raise ConfigError(at, "op between needs a list of two values [low, high]")
    elif op == "within_last_days" and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise ConfigError(at, "op within_last_days needs a number of days")
    elif op in ("contains", "starts_with") and not isinstance(value, str):
        raise ConfigError(at, f"op {op} needs a string")


def exclusion_order(excludes: dict[str, tuple[str, ...]], key: str = "segments") -> list[str]:
    """Segments ordered so that every excluded segment comes before the ones excluding it; a
    cycle is a ConfigError naming it (``segments.a: exclusions form a cycle: a -> b -> a``)."""
    state: dict[str, int] = {}  # 1: being visited, 2: done
    order: list[str] = []

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ConfigError(
                f"{key}.{trail[0]}", f"exclusions form a cycle: {' -> '.join(trail + [name])}"
            )
        state[name] = 1
        for ex in excludes[name]:
            visit(ex, trail + [name])
        state[name] = 2
        order.append(name)

    for name in excludes:
        visit(name, [])
    return order
