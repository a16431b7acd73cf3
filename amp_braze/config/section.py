"""What every part of the configuration shares: a frozen pydantic model that takes no key it does
not name, read from the file with the loader's ``Loading`` context.

Built in code (``BrazeConfig(instance="US-03")``), a model is validated like any pydantic model.
Read from the file, it first drops keys whose value is null (a null key is an absent one), names a
missing key before an unknown one (``customer_kye`` is reported as a misspelling of the required
``customer_key``), refuses the fields only the loader sets (a sync's ``names``), and then takes
what the loader knows from the rest of the file (``_prepare``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic.fields import FieldInfo

from amp_braze.braze import phones
from amp_braze.config.errors import problem, required, unknown_key

_SET_BY_LOADER = "set_by_loader"
_DERIVED = "derived"


@dataclass(frozen=True)
class Loading:
    """What the loader knows while it reads one section: the file's folder and the sections read
    before it."""

    base_dir: Path
    name: str = ""  # the key of the entry being read (sources.<name>, syncs.<name>, ...)
    identity: bool = False  # whether the file has an identity: section
    phone_region: str = phones.DEFAULT_REGION
    destinations: dict[str, Any] = field(default_factory=dict)  # name -> BrazeConfig
    segments: tuple[str, ...] = ()
    sync: Any = None  # the sync: section (SyncConfig), the syncs' defaults
    single: bool = False  # the braze: + sync: shape (one destination named braze)


def set_by_loader(default: Any = ..., *, description: str) -> Any:
    """A field the loader fills in (a name from its key, a value from another section); the file
    never holds it."""
    return Field(default, description=description, json_schema_extra={_SET_BY_LOADER: True})


def derived(default: Any = ..., *, description: str, otherwise: str) -> Any:
    """A key the file may leave out although the model needs it: ``otherwise`` says what the
    loader takes instead (the reference's default column)."""
    return Field(default, description=description, json_schema_extra={_DERIVED: otherwise})


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def is_file_key(info: FieldInfo) -> bool:
    return not _extra(info).get(_SET_BY_LOADER)


def derived_from(info: FieldInfo) -> str | None:
    """What the loader takes when the file leaves this key out, if the model has no default."""
    return _extra(info).get(_DERIVED)


def file_keys(model: type[BaseModel]) -> list[str]:
    """The keys a section of the file may hold, in the model's order."""
    return [n for n, f in model.model_fields.items() if is_file_key(f)]


def key_problem(
    model: type[BaseModel], data: dict, also_required: tuple[str, ...] = ()
) -> tuple[str, str] | None:
    """(key, problem) for the first required key missing from ``data``, else the first key the
    section does not know, else None."""
    fields = model.model_fields
    must = [
        n for n in file_keys(model) if fields[n].is_required() and derived_from(fields[n]) is None
    ]
    present = [str(k) for k in data]
    for name in [*must, *also_required]:
        if name not in data:
            return name, required(name, present)
    known = sorted(file_keys(model))
    for k in present:
        if k not in known:
            return k, unknown_key(k, known)
    return None


class Section(BaseModel):
    """A part of the configuration: frozen, strict about types, no keys it does not name."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any, info: ValidationInfo) -> Any:
        loading = info.context
        if not isinstance(loading, Loading) or not isinstance(data, dict):
            return data  # built in code, or not a mapping (its type check says so)
        data = {k: v for k, v in data.items() if v is not None}
        found = key_problem(cls, data, cls._required(loading))
        if found:
            raise problem(found[1], at=found[0])
        return cls._prepare(data, loading)

    @classmethod
    def _required(cls, loading: Loading) -> tuple[str, ...]:
        """Keys required in this file beyond the model's own."""
        return ()

    @classmethod
    def _prepare(cls, data: dict[str, Any], loading: Loading) -> dict[str, Any]:
        """The file's keys, with what the loader sets added; the entry's name by default."""
        if "name" in cls.model_fields and not is_file_key(cls.model_fields["name"]):
            data["name"] = loading.name
        return data
