"""The kinds of value the configuration's keys hold, each checked where it is declared: names,
choices, bounded numbers, cron schedules, time zones, phone regions, paths."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, BeforeValidator, Strict

from amp_braze.braze import phones
from amp_braze.config.errors import ConfigError, did_you_mean

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # a source, segment, destination or sync name


@dataclass(frozen=True)
class Shown:
    """How the configuration reference names a kind of value (pydantic ignores it)."""

    text: str


class FrozenMap(dict):
    """A mapping a frozen section can hold and hash (a sync's ``subscription_groups``)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def __reduce__(self) -> tuple:  # pickled and copied whole, not key by key
        return (FrozenMap, (dict(self),))

    def _frozen(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a configuration mapping cannot be changed")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _frozen  # type: ignore[assignment]


# Text to text (``{column: group id}``), hashable.
TextMap = Annotated[dict[str, str], AfterValidator(FrozenMap), Shown("mapping of string to string")]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# A list of names, where one name alone is a list of one (``audience: lapsed``).
Names = Annotated[
    tuple[str, ...], BeforeValidator(_one_or_many), Strict(False), Shown("name or list of names")
]


@dataclass(frozen=True)
class Range:
    """A bound on a number, checked after its type; ``above``: the low end is excluded."""

    low: float | None = None
    high: float | None = None
    above: bool = False
    why: str = ""  # why the bound is there, for the message

    @property
    def text(self) -> str:
        if self.low is not None and self.high is not None:
            between = "above {} and at most {}" if self.above else "between {} and {}"
            return between.format(self.low, self.high)
        if self.above:
            return "positive" if self.low == 0 else f"above {self.low}"
        return "0 or more" if self.low == 0 else f"at least {self.low}"

    def __call__(self, value: float) -> float:
        low_ok = self.low is None or (value > self.low if self.above else value >= self.low)
        if not (low_ok and (self.high is None or value <= self.high)):
            raise ValueError(f"must be {self.text}{self.why}; got {value}")
        return value


def bounded(kind: type, **bounds: Any) -> Any:
    """``kind`` within a ``Range``: ``bounded(int, low=2)``."""
    return Annotated[kind, AfterValidator(Range(**bounds))]


def one_of(kind: Any, what: str | None = None) -> Any:
    """A ``Literal`` choice whose message lists the choices (``what`` names a thing: "unknown
    type 'text'; use one of ...")."""
    choices = get_args(kind)

    def check(value: Any) -> Any:
        if isinstance(value, str) and value not in choices:
            listed = ", ".join(choices)
            if what:
                raise ValueError(f"unknown {what} {value!r}; use one of {listed}")
            raise ValueError(f"must be one of {listed}; got {value!r}")
        return value

    return Annotated[kind, BeforeValidator(check)]


def check_cron(key: str, expr: str) -> None:
    """Dagster's own judgement of a cron expression (through its public ScheduleDefinition), so a
    schedule the file names is one Dagster will run."""
    import dagster as dg

    try:
        dg.ScheduleDefinition(name="check", cron_schedule=expr, job_name="check")
    except dg.DagsterInvalidDefinitionError:
        raise ConfigError(key, f"{expr!r} is not a valid cron expression") from None


def _cron(expr: str) -> str:
    try:
        check_cron("", expr)
    except ConfigError as e:
        raise ValueError(e.problem) from None
    return expr


Cron = Annotated[str, AfterValidator(_cron), Shown("cron expression")]


@cache
def time_zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _time_zone(name: str) -> str:
    zones = time_zones()
    if name in zones:
        return name
    by_case = {z.lower(): z for z in zones}
    hint = (
        f" (did you mean {by_case[name.lower()]!r}?)"
        if name.lower() in by_case
        else did_you_mean(name, list(zones))
    )
    raise ValueError(f"unknown time zone {name!r}{hint}; give an IANA name such as Europe/London")


TimeZone = Annotated[str, AfterValidator(_time_zone), Shown("IANA time zone")]


def _region(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(
            "YAML reads NO (Norway), YES, ON and OFF as true or false; quote the region, e.g. "
            'phone_region: "NO"'
        )
    if not isinstance(value, str):
        return value  # the type check says what it is
    found = phones.region_problem(value)
    if found:
        raise ValueError(found)
    return value.strip().upper()


# An ISO 3166 alpha-2 region libphonenumber knows, in any case.
PhoneRegion = Annotated[str, BeforeValidator(_region), Shown("region (ISO 3166 alpha-2)")]

# A path the loader resolves against the file's folder.
FilePath = Annotated[Path, Strict(False), Shown("path")]


def resolve_path(path: str, base: Path) -> str:
    """``path`` against the configuration's folder (``~`` expanded, s3:// kept)."""
    if path.startswith("s3://"):
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise ValueError(f"must be a duration such as 30m, 1h or 2d; got {value!r}")
    amount, unit = _DURATION.fullmatch(value).groups()
    return timedelta(seconds=float(amount) * _UNITS[unit])


# A duration written with its unit: 90s, 30m, 1h, 2d.
Duration = Annotated[
    timedelta, BeforeValidator(_duration), Strict(False), Shown("duration (30m, 1h, 2d)")
]
