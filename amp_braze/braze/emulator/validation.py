"""Per-value validation as Braze documents it for /users/track (attribute names, standard field
formats, custom attribute types, nested objects): a bad value raises ``ObjectError`` with Braze's
wording, and the whole object is skipped, while the rest of the request goes on."""

from __future__ import annotations

import math
from typing import Any

import orjson

from amp_braze.braze import field_rules


class ObjectError(Exception):
    """One object of a request is invalid; its message is what Braze puts in ``errors``."""


SKIP = object()  # a standard value Braze drops without an error (an unknown time zone)
PLAIN_STRING_FIELDS = frozenset({"first_name", "last_name", "home_city", "phone"})


def validate(name: str, value: Any) -> Any:
    """Check one attribute as Braze does; returns the value to store (may be normalised)."""
    if not isinstance(name, str) or not name or len(name) > field_rules.MAX_STRING_CHARS:
        raise ObjectError(f"invalid attribute name {name!r}")
    if name.startswith("$"):
        raise ObjectError(f"attribute name {name!r} may not start with $")
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise ObjectError(f"'{name}' is not a finite number")
    if name in field_rules.STANDARD_FIELDS:
        return standard(name, value)
    return custom(name, value)


def standard(name: str, value: Any) -> Any:
    if (
        name in PLAIN_STRING_FIELDS
        and type(value) is str
        and len(value) <= field_rules.MAX_STRING_CHARS
    ):
        return value
    if name == "email":
        if not isinstance(value, str) or not field_rules.is_email(value):
            raise ObjectError("The value provided for the 'email' field is not a valid email.")
        return value
    if name == "dob":
        if not isinstance(value, str) or not field_rules.is_dob(value):
            raise ObjectError(
                "The value provided for the 'dob' field must be in the format YYYY-MM-DD."
            )
        return value
    if name == "gender":
        if value not in field_rules.GENDERS:
            raise ObjectError(
                "The value provided for the 'gender' field must be one of M, F, O, N, P."
            )
        return value
    if name in ("email_subscribe", "push_subscribe"):
        if value not in field_rules.SUBSCRIPTION_STATES:
            channel = name.split("_")[0].upper()
            raise ObjectError(
                f"BAD_{channel}_SUBSCRIPTION_STATE: must be subscribed, unsubscribed, opted_in"
            )
        return value
    if name == "country":
        # Best-effort mapping; anything else is stored as NULL, as Braze does.
        return field_rules.country_code(value) if isinstance(value, str) else None
    if name == "language":
        return value if isinstance(value, str) and value in field_rules.language_codes() else None
    if name == "time_zone":
        return value if isinstance(value, str) and value in field_rules.time_zones() else SKIP
    if name in ("first_name", "last_name", "home_city", "phone"):
        if not isinstance(value, str):
            raise ObjectError(f"The value provided for the '{name}' field must be a string.")
        if len(value) > field_rules.MAX_STRING_CHARS:
            raise ObjectError(f"'{name}' is longer than {field_rules.MAX_STRING_CHARS} characters")
        return value
    if name in ("braze_id", "alias_name", "alias_label", "external_id"):
        raise ObjectError(f"'{name}' cannot be set this way")
    return value


def custom(name: str, value: Any) -> Any:
    if isinstance(value, bool) or field_rules.is_number(value):
        return value
    if isinstance(value, str):
        if len(value) > field_rules.MAX_STRING_CHARS:
            raise ObjectError(
                f"Custom attribute '{name}' is longer than {field_rules.MAX_STRING_CHARS} characters"
            )
        return value
    if isinstance(value, list):
        if any(isinstance(v, dict) for v in value):
            if len(orjson.dumps(value)) > field_rules.MAX_ARRAY_OF_OBJECTS_BYTES:
                raise ObjectError(f"array of objects '{name}' is larger than 100 KB")
            return value
        for v in value:
            if isinstance(v, str) and len(v) > field_rules.MAX_STRING_CHARS:
                raise ObjectError(
                    f"an element of '{name}' is longer than {field_rules.MAX_STRING_CHARS} characters"
                )
            if isinstance(v, list):
                raise ObjectError(f"'{name}' may not hold nested arrays")
        return value
    if isinstance(value, dict):
        keys = set(value)
        if keys == {"inc"}:
            if not isinstance(value["inc"], int) or isinstance(value["inc"], bool):
                raise ObjectError(f"'{name}': inc must be an integer")
            return value
        if keys and keys <= {"add", "remove"}:
            for k in keys:
                if not isinstance(value[k], list):
                    raise ObjectError(f"'{name}': {k} must be an array")
            return value
        if keys & {"$add", "$remove", "$update"}:
            return value
        check_nested(name, value)
        return value
    raise ObjectError(f"unsupported value for custom attribute '{name}'")


def check_nested(name: str, value: dict, depth: int = 0) -> None:
    if len(orjson.dumps(value)) > field_rules.MAX_NESTED_OBJECT_BYTES:
        raise ObjectError(f"nested attribute '{name}' is larger than 50 KB")
    for k, v in value.items():
        if " " in k or len(k) > field_rules.MAX_STRING_CHARS:
            raise ObjectError(
                f"nested key {k!r} in '{name}' is invalid (no spaces, at most 255 characters)"
            )
        if v is None:
            raise ObjectError(
                f"nested attribute '{name}' holds a null; all nested updates are dropped"
            )
        if isinstance(v, str) and len(v) > field_rules.MAX_STRING_CHARS:
            raise ObjectError(
                f"a value in '{name}' is longer than {field_rules.MAX_STRING_CHARS} characters"
            )
        if isinstance(v, dict) and "$time" not in v:
            check_nested(name, v, depth + 1)
