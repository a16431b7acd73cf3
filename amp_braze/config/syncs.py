"""The ``sync:`` section (how every sync runs) and ``syncs:`` (what each sync sends where)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from amp_braze.catalogue import SINGLE_SYNC, SyncNames, destination_key, sync_names
from amp_braze.config.destinations import BrazeConfig
from amp_braze.config.errors import did_you_mean, problem
from amp_braze.config.section import Loading, Section, derived, set_by_loader
from amp_braze.config.values import (
    Cron,
    FilePath,
    FrozenMap,
    Names,
    TextMap,
    TimeZone,
    bounded,
    resolve_path,
)

GROUPS_DESCRIPTION = (
    "Subscription groups mirrored to Braze, `{column: subscription group id}`: the column "
    "(of the sync's table) holds `subscribed` / `unsubscribed` (any case) or a boolean (true: "
    "subscribed); only changes are sent, with `/v2/subscription/status/set` (50 ids per group a "
    "request, no data points), never as attributes; a null sends nothing; another value is set "
    "aside with its reason (the plan's `subscription_rejections`). A user who leaves the table "
    "gets `unsubscribed` with `on_removed_user: unset`, nothing with `ignore`. External-id "
    "syncs only."
)


def check_groups(groups: dict[str, str]) -> FrozenMap:
    """A group id is a non-empty string and each group has one column."""
    seen: dict[str, str] = {}
    for column, gid in groups.items():
        at = column
        if not column.strip():
            raise problem("a column name must not be empty")
        if not gid.strip():
            raise problem("the subscription group id must not be empty", at=at)
        if gid.strip() in seen:
            raise problem(
                f"group {gid.strip()!r} is also given to column {seen[gid.strip()]!r}: one "
                "column per group",
                at=at,
            )
        seen[gid.strip()] = column
    return FrozenMap({c: g.strip() for c, g in groups.items()})


class SyncConfig(Section):
    """How syncs run: the schedule and time zone every sync has unless it gives its own, and how
    a sync checkpoints, keeps its state and shares its destination."""

    schedule: Cron = Field(
        "0 6 * * *",
        description="Cron for `braze_sync_schedule` (and the default of every "
        "`syncs.<name>.schedule`).",
    )
    checkpoint_rows: bounded(int, low=75) = Field(
        50_000,
        description="Accepted rows per sync-state checkpoint; rows are also recorded as going "
        "out in windows of half this (at most 30,000).",
    )
    timezone: TimeZone = Field(
        "UTC",
        description="The schedule's time zone: an IANA name such as `Europe/London` (and the "
        "default of every `syncs.<name>.timezone`).",
    )
    keep_state_versions: bounded(
        int, low=2, why=" (a sync or plan may still be reading the previous version)"
    ) = Field(
        3,
        description="Sync-state versions kept after a sync; older ones, and journal entries "
        "already folded in, are deleted.",
    )
    lease_seconds: bounded(float, low=3) = Field(
        60.0,
        description="How long a sync that stopped renewing its destination's lease (a dead "
        "machine) keeps others waiting, in seconds; a dead process on the same machine frees it "
        "at once.",
    )
    lease_wait_seconds: bounded(float, low=0) = Field(
        3600.0,
        description="The most a sync waits for another sync of the same destination to finish, "
        "in seconds; then it fails, having sent nothing.",
    )
    subscription_groups: TextMap = Field(
        default_factory=FrozenMap,
        description="With the single `braze:` section, the sync's subscription groups "
        "`{column: subscription group id}`, as `syncs.<name>.subscription_groups` describes "
        "them (with `destinations:` + `syncs:`, give them per sync).",
    )

    _groups = field_validator("subscription_groups")(check_groups)


def names_of(
    name: str, destination: str, braze: BrazeConfig, single: bool, own_sql: bool
) -> SyncNames:
    """A sync's names (``single``: the braze: + sync: shape, whose names and state stay as they
    always were)."""
    key = destination_key(braze.instance, braze.rest_endpoint, braze.identifier)
    return sync_names(name, destination, key, single, own_sql)


class SyncSpec(Section):
    """One sync: what it sends to which destination, and when. An *orchestration* sends a whole
    table (the profile table, or its own ``sql``); a *campaign* sends the members of an
    ``audience`` (minus ``exclude``) with the ``attributes`` it names."""

    name: str = set_by_loader(description="The sync's key under `syncs:`.")
    destination: str = Field(description="The destination this sync sends to.")
    schedule: Cron = derived(description="Cron of `<name>_schedule`.", otherwise="`sync.schedule`")
    timezone: TimeZone = derived(
        description="Time zone of `<name>_schedule`: an IANA name.",
        otherwise="`sync.timezone`",
    )
    sql: FilePath | None = Field(
        None,
        description="An orchestration with its own query (same tables as `profile_sql`, same "
        "Braze field rules and rejections): the asset `<name>/attributes`; without it the sync "
        "sends `braze_customer_attributes`.",
    )
    audience: Names = Field(
        (),
        description="A campaign: only members of these segments are sent (one segment name, or "
        "a list); a user who leaves is handled by the destination's `on_removed_user`.",
    )
    exclude: Names = Field((), description="Segments whose members are left out of the audience.")
    attributes: Names | None = Field(
        None,
        description="The attributes (columns of its table) the sync sends; every column when "
        "left out.",
    )
    segments: Names | None = Field(
        None,
        description="The segments whose attributes it sends (`[]`: none); every segment when "
        "left out.",
    )
    subscription_groups: TextMap = Field(default_factory=FrozenMap, description=GROUPS_DESCRIPTION)
    names: SyncNames = set_by_loader(
        description="Its assets, jobs, schedule, pool and storage (amp_braze.catalogue)."
    )

    _groups = field_validator("subscription_groups")(check_groups)

    @field_validator("audience", "exclude", "segments")
    @classmethod
    def _known_segments(cls, value: Any, info: ValidationInfo) -> Any:
        loading = info.context
        if isinstance(loading, Loading) and value:
            for i, name in enumerate(value):
                if name not in loading.segments:
                    hint = did_you_mean(name, list(loading.segments))
                    raise problem(f"unknown segment {name!r}{hint}", at=f"[{i}]")
        return value

    @model_validator(mode="after")
    def _audience(self) -> SyncSpec:
        if self.exclude and not self.audience:
            raise problem("needs an audience to exclude from", at="exclude")
        for column in self.subscription_groups:
            if self.attributes is not None and column in self.attributes:
                raise problem(
                    f"column {column!r} is both an attribute and a subscription group's column; "
                    "a state is sent with /v2/subscription/status/set, never as an attribute: "
                    "leave it out of attributes",
                    at=f"subscription_groups.{column}",
                )
        return self

    @classmethod
    def _prepare(cls, data: dict[str, Any], loading: Loading) -> dict[str, Any]:
        data = super()._prepare(data, loading)
        data.setdefault("schedule", loading.sync.schedule)
        data.setdefault("timezone", loading.sync.timezone)
        sql = data.pop("sql", None)
        if isinstance(sql, str) and sql:
            data["sql"] = Path(resolve_path(sql, loading.base_dir))
            if not data["sql"].is_file():
                raise problem(f"file not found: {data['sql']}", at="sql")
        elif sql:
            data["sql"] = sql  # not a string: its type check says so
        dest = data.get("destination")
        if isinstance(dest, str):
            if dest not in loading.destinations:
                hint = did_you_mean(dest, list(loading.destinations))
                raise problem(f"unknown destination {dest!r}{hint}", at="destination")
            own = data.get("sql") is not None
            data["names"] = names_of(loading.name, dest, loading.destinations[dest], False, own)
            kind = loading.destinations[dest].identifier
            if data.get("subscription_groups") and kind != "external_id":
                raise problem(
                    f"subscription groups are sent by external_id, and destination {dest!r} "
                    f"uses identifier {kind}; give them to a sync of an external_id destination",
                    at="subscription_groups",
                )
        return data

    @classmethod
    def single(cls, sync: SyncConfig, destination: BrazeConfig) -> SyncSpec:
        """The one sync of the braze: + sync: shape."""
        names = names_of(SINGLE_SYNC, SINGLE_SYNC, destination, True, False)
        return cls(
            name=SINGLE_SYNC,
            destination=SINGLE_SYNC,
            schedule=sync.schedule,
            timezone=sync.timezone,
            subscription_groups=sync.subscription_groups,
            names=names,
        )

    def with_names(self, destination: BrazeConfig, single: bool = False) -> SyncSpec:
        """This sync with its names computed again for ``destination``."""
        names = names_of(self.name, self.destination, destination, single, self.sql is not None)
        return self.model_copy(update={"names": names})
