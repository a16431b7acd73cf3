"""The configuration's one error, and how a pydantic ``ValidationError`` becomes it.

Every error names its key path (``sources.pos.path``, ``syncs.winback.audience[0]``) and says what
is wrong in the words a user acts on, whichever check found it: a model's field type, one of the
checks in these modules, or the loader's checks across sections.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

PROBLEM = "amp_braze_config"  # the error type of ``problem``


class ConfigError(ValueError):
    """A configuration problem, with the key path it concerns."""

    def __init__(self, key: str, problem: str, source: str | None = None):
        self.key = key
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}")

    def __reduce__(self):  # picklable, so it survives a trip between processes intact
        return (type(self), (self.key, self.problem, self.source))


def problem(message: str, at: str = "") -> PydanticCustomError:
    """An error raised inside a model's validator; ``at`` is the key below the validated value it
    concerns (``exclude[0]``, ``rules.all[1].op``), empty for the value itself."""
    return PydanticCustomError(PROBLEM, "{message}", {"message": message, "at": at})


def key_path(*parts: str | int) -> str:
    """``sources`` + ``pos`` + ``path`` -> ``sources.pos.path``; integers and parts that start
    with ``[`` are list positions: ``exclude`` + 0 -> ``exclude[0]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part:
            out += part if (not out or part.startswith("[")) else f".{part}"
    return out


def kind_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def did_you_mean(word: str, known: list[str], quote: bool = True) -> str:
    """`` (did you mean 'x'?)`` for the closest known word, or nothing."""
    close = difflib.get_close_matches(word, known, n=1)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if quote else f" (did you mean {close[0]}?)"


def required(name: str, present: list[str]) -> str:
    """Why a missing key is missing: maybe a key that is there is a misspelling of it."""
    typo = difflib.get_close_matches(name, present, n=1)
    return "is required" + (f" (is {typo[0]!r} a misspelling of it?)" if typo else "")


def unknown_key(name: str, known: list[str]) -> str:
    return f"unknown key{did_you_mean(name, known)}; known keys here: {', '.join(known)}"


# What a pydantic type error expected, in the words of the file.
_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "path_type": "a string",
    "bool_type": "a boolean",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
}


def _describe(error: Any) -> tuple[str, str]:
    """(the key below the error's location, what is wrong) for one pydantic error."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == PROBLEM:
        return ctx.get("at", ""), ctx["message"]
    if kind in ("value_error", "assertion_error"):
        return "", str(ctx.get("error", error["msg"]))
    if kind == "missing":
        present = [str(k) for k in value] if isinstance(value, dict) else []
        return "", required(str(error["loc"][-1]), present)
    if kind == "extra_forbidden":
        return "", "unknown key"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        return "", f"must be one of {', '.join(choices)}; got {value!r}"
    if kind in _EXPECTED:
        return "", f"must be {_EXPECTED[kind]}, got {kind_name(value)}"
    return "", error["msg"]


def from_validation(error: ValidationError, key: str = "") -> ConfigError:
    """The first problem pydantic found, as a ConfigError under ``key`` (the section validated)."""
    first = error.errors()[0]
    at, what = _describe(first)
    where = key_path(key, *first["loc"], at)
    return ConfigError(where or "(top level)", what)
