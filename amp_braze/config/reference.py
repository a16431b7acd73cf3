"""The configuration reference, generated from the models: one table per section, every key with
its type, default and description. ``python -m amp_braze.config.reference`` prints it; it is
committed as docs/reference/configuration.md (a test keeps the two equal)."""

from __future__ import annotations

import inspect
import types
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from amp_braze.config.model import Config
from amp_braze.config.section import derived_from, file_keys
from amp_braze.config.values import Range, Shown

DOC = Path("docs/reference/configuration.md")  # relative to the repository

_WORDS = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
_INTRO = """\
# Configuration reference

<!-- Generated from the models in amp_braze/config by `python -m amp_braze.config.reference`;
do not edit by hand. -->

One YAML file configures amp_braze: `$AMP_BRAZE_CONFIG`, else `./amp_braze.yaml`, else the
bundled demo configuration. Relative paths resolve against the file's folder; `${VAR}` and
`${VAR:-default}` in values expand from the environment (`${AMP_BRAZE_HOME}` is the working
directory unless set). `<name>` stands for a key you choose: a letter, then letters, digits and
`_`. Where a list of names is expected, one name alone is accepted too (`audience: lapsed`).
`amp-braze validate` checks a file; a mistake is reported with its key path, e.g.
`braze.instance: unknown Braze instance 'US-3' (did you mean US-03?); known: US-01, ...`.
Secrets never live in the file: a destination names the environment variable of its API key.
"""


def _parts(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any], bool]:
    """(the type, every metadata object on it, whether None is allowed), unwrapped."""
    metadata = list(metadata)
    optional = False
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *more = get_args(annotation)
            metadata += more
        elif get_origin(annotation) in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(get_args(annotation))
            if len(args) != 1:
                return annotation, metadata, optional
            annotation = args[0]
        else:
            return annotation, metadata, optional


def _type_text(annotation: Any, metadata: list[Any] = ()) -> str:
    kind, meta, _ = _parts(annotation, list(metadata))
    shown = next((m.text for m in meta if isinstance(m, Shown)), None)
    if shown is None:
        shown = _plain(kind)
    bounds = [m.func for m in meta if isinstance(getattr(m, "func", None), Range)]
    return shown + "".join(f", {b.text}" for b in bounds)


def _plain(kind: Any) -> str:
    origin, args = get_origin(kind), get_args(kind)
    if origin is Literal:
        quoted = [f"`{a}`" for a in args]
        return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    if inspect.isclass(kind) and issubclass(kind, BaseModel):
        return "mapping"
    if origin is dict:
        value = args[1] if args else Any
        if value is Any:
            return "mapping"
        if inspect.isclass(value) and issubclass(value, BaseModel):
            return "mapping of names"
        return f"mapping of string to {_type_text(value)}"
    if origin in (tuple, list):
        return f"list of {_plural(args[0])}"
    return _WORDS.get(kind, getattr(kind, "__name__", str(kind)))


def _plural(kind: Any) -> str:
    if get_origin(kind) in (tuple, list):
        return f"lists of {_plural(get_args(kind)[0])}"
    return f"{_plain(kind)}s"


def _duration_text(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, tuple | list):
        return f"`[{', '.join(map(str, value))}]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    if isinstance(value, timedelta):
        return f"`{_duration_text(value)}`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def _default_text(info: FieldInfo) -> str:
    otherwise = derived_from(info)
    if otherwise is not None:
        return otherwise
    if info.default_factory is not None:
        return _value_text(info.default_factory())
    if info.default is PydanticUndefined:
        return "required"
    return _value_text(info.default)


def _section_of(info: FieldInfo) -> tuple[type[BaseModel], str] | None:
    """The model under a key, and the key part it adds (``.<name>`` for a mapping of them)."""
    kind, _, _ = _parts(info.annotation, info.metadata)
    if inspect.isclass(kind) and issubclass(kind, BaseModel):
        return kind, ""
    if get_origin(kind) is dict:
        value = get_args(kind)[1]
        if inspect.isclass(value) and issubclass(value, BaseModel):
            return value, ".<name>"
    return None


def sections(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, type]]:
    """Every section of the file, as (key path, model), in the order of the file's keys."""
    out = [(prefix, model)]
    for name in file_keys(model):
        below = _section_of(model.model_fields[name])
        if below:
            path = f"{prefix}.{name}" if prefix else name
            out += sections(below[0], path + below[1])
    return out


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("``", "`")


def _table(prefix: str, model: type[BaseModel]) -> str:
    title = f"`{prefix}`" if prefix else "Top level"
    doc = _escape(" ".join((model.__doc__ or "").split()))
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for name in file_keys(model):
        info = model.model_fields[name]
        key = f"{prefix}.{name}" if prefix else name
        below = _section_of(info)
        kind = (
            f"{_type_text(info.annotation, info.metadata)} (see `{key}{below[1]}`)"
            if below
            else _type_text(info.annotation, info.metadata)
        )
        what = _escape(info.description or "")
        rows.append(f"| `{key}` | {kind} | {_default_text(info)} | {what} |")
    return f"## {title}\n\n{doc}\n\n" + "\n".join(rows) + "\n"


def reference() -> str:
    """The whole reference, as Markdown."""
    return _INTRO + "".join(f"\n{_table(p, m)}" for p, m in sections())


if __name__ == "__main__":
    print(reference(), end="")
