"""The ``identity:`` section: which columns identify a person, how each is compared, and the guards."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, ValidationInfo, field_validator

from amp_braze.config.errors import kind_name, problem
from amp_braze.config.section import Loading, Section, derived
from amp_braze.config.values import Names, bounded, one_of

# How a column is normalised and compared (identity/standardize.py and identity/linkage.py).
FieldKind = Literal["name", "exact", "email", "phone", "date", "postcode", "address", "id", "text"]
FIELD_KINDS: tuple[str, ...] = get_args(FieldKind)
# Kinds whose single value identifies one person: a value many records share is junk.
IDENTIFYING_KINDS = ("email", "phone", "id", "exact")

Kind = one_of(FieldKind, "kind")
ColumnLists = tuple[tuple[str, ...], ...]


def default_blocking(fields: dict[str, str]) -> ColumnLists:
    """Without ``blocking:``, records that share any identifying value, date or the full name
    are compared."""
    names = tuple(c for c, k in fields.items() if k == "name")
    singles = tuple((c,) for c, k in fields.items() if k in IDENTIFYING_KINDS + ("date",))
    return ((names,) if names else ()) + singles


def _column_lists(raw: Any, fields: dict[str, str] | None) -> ColumnLists:
    """Rules of columns; a rule of one column may be written as the column, and a single rule of
    one column as that column alone."""
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, tuple):
        raw = list(raw)
    if not isinstance(raw, list):
        raise ValueError(f"must be a list, got {kind_name(raw)}")
    rules = []
    for i, rule in enumerate(raw):
        at = f"[{i}]"
        rule = [rule] if isinstance(rule, str) else rule
        if not isinstance(rule, list | tuple) or not rule:
            raise problem(f"must be a list of column names, got {kind_name(rule)}", at=at)
        for col in rule:
            if not isinstance(col, str):
                raise problem(f"a column name must be a string, got {kind_name(col)}", at=at)
            if fields is not None and col not in fields:
                raise problem(
                    f"{col!r} is not in identity.fields ({', '.join(fields)}); blocking compares "
                    "normalised fields",
                    at=at,
                )
        rules.append(tuple(rule))
    return tuple(rules)


class IdentityConfig(Section):
    """Identity resolution: feeds that share no key, linked into people (each with an ``amp_id``)."""

    fields: dict[str, Kind] = Field(
        description="Per column (after renames), its kind: how it is normalised and compared: "
        + ", ".join(f"`{k}`" for k in FIELD_KINDS)
        + "."
    )
    blocking: ColumnLists = derived(
        description="Which records are compared at all: two records are scored when they agree "
        "on every column of at least one rule. Keep each rule selective.",
        otherwise="each email/phone/id/exact/date field, and the name fields together",
    )
    deterministic: ColumnLists = Field(
        (),
        description="Rules that link outright: records equal on every column of a rule are one "
        "person (any feed column, compared trimmed).",
    )
    threshold: bounded(float, low=0, high=1, above=True) = Field(
        0.9, description="The match probability at or above which the model links two records."
    )
    max_cluster_size: bounded(int, low=2) = Field(
        500,
        description="A larger cluster is clustered again on its stronger links, and what stays "
        "too large is split into single records; the `cluster_size` check warns.",
    )
    max_records_per_value: bounded(int, low=2) = Field(
        50,
        description="A value of an email, phone, id or deterministic column that more records "
        "share is junk: it links nobody and the `junk_values` check lists it.",
    )
    junk_values: Names = Field(
        (), description="More placeholder values to ignore, besides the built-in ones."
    )
    retrain: bool = Field(
        False,
        description="Train the model on every run; by default it is trained once (and again "
        "when `fields` or `blocking` change) and stored.",
    )
    default_country_code: str | None = Field(
        None,
        description="Superseded by `phone_region`; still accepted (it sets `phone_region` when "
        "that is absent, `44` -> `GB`, and must agree with it otherwise).",
    )
    one_record_per_person: Names = Field(
        (),
        description="Feeds that hold at most one record per person (a loyalty program, a "
        "deduplicated CRM): clusters never hold two records of such a feed.",
    )
    score_chunks: bounded(int, low=1) = Field(
        1,
        description="Score the candidate pairs in pieces: each side of a pair is split in this "
        "many chunks by record id and each chunk pair is scored in a Dagster step of its own "
        "(Splink's `predict_chunk`; `identity_score_<i>_<j>`, which any worker runs), so a full "
        "scoring holds one piece's pairs at a time, not all of them. The links are the same as "
        "in one piece.",
    )

    @property
    def columns(self) -> list[str]:
        """Every feed column identity reads: compared fields, then columns only rules use."""
        cols = list(self.fields)
        for rule in self.deterministic:
            cols += [c for c in rule if c not in cols]
        return cols

    @field_validator("fields")
    @classmethod
    def _some(cls, fields: dict[str, str]) -> dict[str, str]:
        if not fields:
            raise ValueError("needs at least one column")
        return fields

    @field_validator("blocking", mode="before")
    @classmethod
    def _blocking(cls, raw: Any, info: ValidationInfo) -> Any:
        return _column_lists(raw, info.data.get("fields"))

    @field_validator("deterministic", mode="before")
    @classmethod
    def _deterministic(cls, raw: Any) -> Any:
        return _column_lists(raw, None)

    @field_validator("junk_values", mode="before")
    @classmethod
    def _as_text(cls, raw: Any) -> Any:
        if isinstance(raw, list | tuple):
            return [v if isinstance(v, str) else str(v) for v in raw]
        return raw

    @field_validator("default_country_code", mode="before")
    @classmethod
    def _calling_code(cls, raw: Any) -> Any:
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise ValueError(f"must be a string or an integer, got {kind_name(raw)}")
        return str(raw).strip().lstrip("+")

    @classmethod
    def _prepare(cls, data: dict[str, Any], loading: Loading) -> dict[str, Any]:
        fields = data.get("fields")
        if not data.get("blocking") and isinstance(fields, dict):
            data["blocking"] = default_blocking(
                {str(c): k for c, k in fields.items() if isinstance(k, str)}
            )
        return data
