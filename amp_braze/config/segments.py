"""The ``segments:`` section: each segment by SQL or by rules, and the segments it excludes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from amp_braze.config.errors import ConfigError, did_you_mean, key_path, problem
from amp_braze.config.rules import RULE_OPS, check_rule, exclusion_order
from amp_braze.config.section import Loading, Section, set_by_loader
from amp_braze.config.values import Names, resolve_path


class SegmentConfig(Section):
    """One segment: the users a query returns, or the users a rule tree selects, minus the
    members of the segments it excludes."""

    name: str = set_by_loader(description="The segment's key under `segments:`.")
    sql: str | None = Field(
        None,
        description="A query over braze_customer_attributes returning the members' identifier.",
    )
    sql_file: str | None = Field(
        None, description="A file holding the query (relative to the configuration), for `sql`."
    )
    rules: dict[str, Any] | None = Field(
        None,
        description="A rule tree instead of SQL: `all:`, `any:` or `not:` of conditions "
        "`{attribute, op, value}`; ops: " + " ".join(f"`{op}`" for op in RULE_OPS) + ".",
    )
    exclude: Names = Field((), description="Segments whose members are left out of this one.")
    max_change: float = Field(
        0.5,
        description="The size guard: the blocking check `segment_size_guard` fails, stopping "
        "the sync, when the segment's size moved by more than this share since the last "
        "accepted size.",
    )
    allow_large_change: bool = Field(False, description="Let the size move past `max_change`.")
    description: str = Field("", description="What the segment is for (shown in the UI).")

    @field_validator("rules")
    @classmethod
    def _grammar(cls, rules: dict[str, Any] | None) -> dict[str, Any] | None:
        if rules is not None:
            try:
                check_rule(rules)
            except ConfigError as e:
                raise problem(e.problem, at=e.key) from None
        return rules

    @model_validator(mode="after")
    def _one_definition(self) -> SegmentConfig:
        if (self.sql is None) == (self.rules is None):
            raise problem("needs exactly one of `sql:` (or `sql_file:`) and `rules:`")
        return self

    @classmethod
    def _prepare(cls, data: dict[str, Any], loading: Loading) -> dict[str, Any]:
        data = super()._prepare(data, loading)
        sql_file = data.get("sql_file")
        if isinstance(sql_file, str):
            path = Path(resolve_path(sql_file, loading.base_dir))
            if not path.is_file():
                raise problem(f"file not found: {path}", at="sql_file")
            data["sql_file"], data["sql"] = str(path), path.read_text()
        return data


def check_exclusions(segments: dict[str, SegmentConfig], key: str = "segments") -> None:
    """Every excluded segment exists, none excludes itself, and exclusions form no cycle."""
    for name, seg in segments.items():
        for i, ex in enumerate(seg.exclude):
            at = key_path(key, name, "exclude", i)
            if ex not in segments:
                raise ConfigError(at, f"unknown segment {ex!r}{did_you_mean(ex, list(segments))}")
            if ex == name:
                raise ConfigError(at, "a segment cannot exclude itself")
    exclusion_order({name: seg.exclude for name, seg in segments.items()}, key)
