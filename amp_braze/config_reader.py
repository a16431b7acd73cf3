"""Reading a YAML mapping key by key: type checks, ${VAR} expansion, unknown-key and misspelling hints.

Every section of the configuration is read through ``ConfigNode`` so that every error names its key
path (``sources.pos.path``) the same way.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

HOME_VAR = "AMP_BRAZE_HOME"  # ${AMP_BRAZE_HOME} expands to the working directory when unset


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


REQUIRED = object()
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str, key: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if name == HOME_VAR:
            return str(Path.cwd())
        if default is not None:
            return default
        raise ConfigError(key, f"environment variable {name} is not set (and no default given)")

    return _ENV_REF.sub(repl, value)


class ConfigNode:
    """A mapping being read, which remembers its key path and rejects keys nobody asked for."""

    def __init__(self, data: Any, path: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(path or "(top level)", f"must be a mapping, got {kind_name(data)}")
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = REQUIRED) -> Any:
        self.seen.add(name)
        if name not in self.data or self.data[name] is None:
            if default is REQUIRED:
                typo = difflib.get_close_matches(name, [str(k) for k in self.data], n=1)
                hint = f" (is {typo[0]!r} a misspelling of it?)" if typo else ""
                raise ConfigError(self.key(name), f"is required{hint}")
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(self.key(name), f"must be {kinds_name(kinds)}, got a boolean")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise ConfigError(
                self.key(name), f"must be {kinds_name(kinds)}, got {kind_name(value)}"
            )
        if isinstance(value, str):
            value = expand_env(value, self.key(name))
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: Any = REQUIRED) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise ConfigError(self.key(name), f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def child(self, name: str, required: bool = False) -> ConfigNode:
        self.seen.add(name)
        if required and name not in self.data:
            raise ConfigError(self.key(name), "is required")
        return ConfigNode(self.data.get(name), self.key(name))

    def done(self) -> None:
        unknown = [k for k in self.data if k not in self.seen]
        if unknown:
            k = str(unknown[0])
            close = difflib.get_close_matches(k, sorted(self.seen), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(sorted(self.seen))
            raise ConfigError(self.key(k), f"unknown key{hint}; known keys here: {known}")


def kind_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def kinds_name(kinds: tuple[type, ...]) -> str:
    words = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    words |= {dict: "a mapping", list: "a list"}
    return " or ".join(words.get(k, k.__name__) for k in kinds)


def resolve_path(path: str, base: Path) -> str:
    if path.startswith("s3://"):
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def str_map(node: ConfigNode, name: str) -> dict[str, str]:
    raw = node.get(name, dict, {})
    for k, v in raw.items():
        if not isinstance(v, str):
            raise ConfigError(f"{node.key(name)}.{k}", f"must be a string, got {kind_name(v)}")
    return {str(k): v for k, v in raw.items()}
