"""Braze destinations: the ``braze:`` section, or each entry of ``destinations:`` (the same keys),
and how amp_braze talks to that workspace."""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from amp_braze.braze import phones
from amp_braze.braze.instances import INSTANCES, check_endpoint
from amp_braze.config.errors import did_you_mean, problem
from amp_braze.config.section import Loading, Section, set_by_loader
from amp_braze.config.values import bounded, one_of

Identifier = Literal["external_id", "braze_id", "user_alias"]
IDENTIFIERS: tuple[str, ...] = get_args(Identifier)


class RateLimit(Section):
    """How many requests the workspace takes per window (Braze's limit for /users/track)."""

    requests: bounded(int, low=0, above=True) = Field(
        3000, description="Requests per window (Braze's burst limit by default)."
    )
    per_seconds: bounded(float, low=0, above=True) = Field(
        3.0, description="The window, in seconds."
    )

    @property
    def per_second(self) -> float:
        return self.requests / self.per_seconds


class BrazeConfig(Section):
    """One Braze workspace (a destination) and how amp_braze talks to it."""

    instance: str | None = Field(
        None,
        description="A Braze instance: " + ", ".join(f"`{i}`" for i in INSTANCES) + ". One of "
        "`instance` and `rest_endpoint` is required.",
    )
    rest_endpoint: str | None = Field(
        None,
        description="A REST endpoint URL instead of `instance`; `http://` only for loopback "
        "hosts (the emulator).",
    )
    identifier: one_of(Identifier) = Field(
        "external_id",
        description="How users are identified: " + ", ".join(f"`{i}`" for i in IDENTIFIERS) + ".",
    )
    update_existing_only: bool = Field(
        False, description="Send `_update_existing_only: true` (never create users)."
    )
    on_removed_user: one_of(Literal["ignore", "unset"]) = Field(
        "ignore",
        description="A user who leaves the table (or a campaign's audience): `ignore`, or "
        "`unset` (managed attributes set to null).",
    )
    segment_attributes: one_of(Literal["boolean", "array"]) = Field(
        "boolean",
        description="`boolean`: one attribute `<prefix><segment>` per segment; `array`: one "
        "array attribute.",
    )
    segment_prefix: str = Field(
        "amp_", description="Prefix of the boolean segment attributes (letters, digits, _)."
    )
    segment_array_attribute: str = Field(
        "amp_segments", description="Name of the array attribute in `array` mode."
    )
    rate_limit: RateLimit = Field(
        default_factory=RateLimit,
        description="The client-side limit, Braze's burst limit by default.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Renames from SQL column names to Braze attribute names.",
    )
    shadowed_fields: one_of(Literal["error", "warn"]) = Field(
        "error",
        description="A custom attribute that shadows a standard field (`birthday` for `dob`): "
        "`error` or `warn`.",
    )
    unset_removed_attributes: bool = Field(
        False,
        description="An attribute dropped from the SQL is sent as null to every user who had it.",
    )
    max_rejected_share: bounded(float, low=0, high=1) = Field(
        0.01,
        description="The blocking check fails when more than this share of rows is rejected.",
    )
    concurrency: bounded(int, low=1, high=64) = Field(8, description="Concurrent requests.")
    objects_per_request: bounded(int, low=1, high=75, why=" (Braze's limit)") = Field(
        75, description="Objects per `/users/track` request."
    )
    timeout_seconds: float = Field(30.0, description="The timeout of one request, in seconds.")
    max_retries: int = Field(6, description="Retries of one request (5xx and network errors).")
    max_wait_seconds: bounded(float, low=0) = Field(
        900.0,
        description="The most a sync waits out rate limiting (429s) in total, in seconds; then "
        "it stops with a message, keeping what Braze accepted.",
    )
    max_consecutive_failures: bounded(int, low=1) = Field(
        20,
        description="Failed requests in a row (connection errors, timeouts, 5xx) after which a "
        "sync stops with one message naming the endpoint.",
    )
    name: str = set_by_loader(
        "braze", description="The destination's key under `destinations:` (`braze` for braze:)."
    )
    api_key_env: str = Field(
        "BRAZE_API_KEY",
        description="The environment variable that holds this workspace's API key.",
    )
    phone_region: str = set_by_loader(
        phones.DEFAULT_REGION,
        description="The region the phone rule reads national numbers in: the top-level "
        "`phone_region`.",
    )

    @field_validator("instance")
    @classmethod
    def _instance(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in INSTANCES:
            hint = did_you_mean(value.upper(), list(INSTANCES), quote=False)
            raise ValueError(
                f"unknown Braze instance {value!r}{hint}; known: {', '.join(INSTANCES)}"
            )
        return value.upper() if value else None

    @field_validator("rest_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        found = check_endpoint(value) if value is not None else None
        if found:
            raise ValueError(found)
        return value

    @field_validator("api_key_env")
    @classmethod
    def _key_env(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
            raise ValueError("must be an environment variable name")
        return value

    @field_validator("segment_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_]*", value):
            raise ValueError("may hold only letters, digits and _")
        return value

    @model_validator(mode="after")
    def _one_place(self) -> BrazeConfig:
        if self.instance is None and self.rest_endpoint is None:
            raise problem("is required (or give rest_endpoint)", at="instance")
        if self.instance is not None and self.rest_endpoint is not None:
            raise problem("give either instance or rest_endpoint, not both", at="rest_endpoint")
        return self

    @classmethod
    def _prepare(cls, data: dict[str, Any], loading: Loading) -> dict[str, Any]:
        data = super()._prepare(data, loading)
        data["phone_region"] = loading.phone_region
        return data

    def segment_attribute(self, segment: str) -> str:
        """The boolean attribute that carries one segment's membership in this workspace."""
        return f"{self.segment_prefix}{segment}"

    def segment_attribute_names(self, segments: list[str] | tuple[str, ...]) -> list[str]:
        """The attributes that carry these segments: a boolean each, or the one array."""
        if self.segment_attributes == "boolean":
            return [self.segment_attribute(s) for s in segments]
        return [self.segment_array_attribute] if segments else []
