"""``${VAR}`` and ``${VAR:-default}`` in the file's values, expanded from the environment before
the file is validated; ``${AMP_BRAZE_HOME}`` is the working directory unless set."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from amp_braze.config.errors import ConfigError, key_path

HOME_VAR = "AMP_BRAZE_HOME"  # ${AMP_BRAZE_HOME} expands to the working directory when unset
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str, key: str) -> str:
    """One value with its references expanded; an unset variable without a default is an error
    naming the key."""

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


def expand_tree(data: Any, key: str = "") -> Any:
    """Every string value of parsed YAML expanded (keys are left as written)."""
    if isinstance(data, str):
        return expand_env(data, key)
    if isinstance(data, dict):
        return {k: expand_tree(v, key_path(key, str(k))) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_tree(v, key_path(key, i)) for i, v in enumerate(data)]
    return data
