"""The whole configuration: the file's top-level keys and the sections under them, as loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from amp_braze.braze import phones
from amp_braze.config.currents import CurrentsConfig
from amp_braze.config.destinations import BrazeConfig
from amp_braze.config.events import EventStream
from amp_braze.config.identity import IdentityConfig
from amp_braze.config.scale import ScaleConfig
from amp_braze.config.section import Section, derived, set_by_loader
from amp_braze.config.segments import SegmentConfig
from amp_braze.config.sources import SourceConfig
from amp_braze.config.syncs import SyncConfig, SyncSpec
from amp_braze.config.values import FilePath, PhoneRegion, resolve_path


class Config(Section):
    """An amp_braze configuration. Relative paths are resolved against ``base_dir`` (the file's
    folder); ``braze`` is the destination whose field rules shape braze_customer_attributes."""

    path: Path | None = set_by_loader(None, description="The file it was read from.")
    base_dir: FilePath = set_by_loader(description="The folder relative paths resolve against.")
    storage: str = Field(
        ".amp_braze",
        validate_default=True,
        description="Where tables and sync state live: a local folder or `s3://bucket/prefix`.",
    )
    sources: dict[str, SourceConfig] = Field(
        description="The feeds, one asset `sources/<name>` each (at least one)."
    )
    profile_sql: FilePath = Field(
        description="The SQL file that defines `braze_customer_attributes`, over "
        "`customer_profiles`, `engagement_summary` and the sources."
    )
    phone_region: PhoneRegion = Field(
        phones.DEFAULT_REGION,
        description="The region (ISO 3166 alpha-2, any case) of a phone number written without a "
        "country code; every phone reaches Braze in E.164.",
    )
    braze: BrazeConfig = derived(
        description="One Braze destination with one sync (named `braze`), instead of "
        "`destinations:` + `syncs:`.",
        otherwise="one of `braze:` / `destinations:`",
    )
    destinations: dict[str, BrazeConfig] = Field(
        default_factory=dict,
        description="Braze workspaces by name, each with the keys of `braze:`; with `syncs:`.",
    )
    syncs: dict[str, SyncSpec] = Field(
        default_factory=dict,
        description="What each sync sends to which destination, and when; with `destinations:`.",
    )
    segments: dict[str, SegmentConfig] = Field(
        default_factory=dict, description="Audiences by SQL or by rules, by name."
    )
    sync: SyncConfig = Field(
        default_factory=SyncConfig, description="How syncs run, and their default schedule."
    )
    scale: ScaleConfig = Field(
        default_factory=ScaleConfig, description="How the pipeline splits by customer."
    )
    identity: IdentityConfig | None = Field(
        None, description="Identity resolution, for feeds that share no customer key."
    )
    currents: CurrentsConfig | None = Field(
        None, description="Where Braze Currents writes; omit the section to disable."
    )
    events: dict[str, EventStream] = Field(
        default_factory=dict,
        description="Event streams by name: what customers did, each row sent to Braze once.",
    )

    @field_validator("storage")
    @classmethod
    def _storage(cls, storage: str, info: ValidationInfo) -> str:
        base = info.data.get("base_dir")
        if storage.startswith("s3://") or base is None:
            return storage
        return resolve_path(storage, base)

    @field_validator("profile_sql", mode="before")
    @classmethod
    def _profile_sql(cls, path: Any, info: ValidationInfo) -> Any:
        base = info.data.get("base_dir")
        if isinstance(path, str) and base is not None:
            path = Path(resolve_path(path, base))
        if isinstance(path, Path) and not path.is_file():
            raise ValueError(f"file not found: {path}")
        return path

    @property
    def profile_sql_text(self) -> str:
        return self.profile_sql.read_text()

    def destination_of(self, sync: SyncSpec | EventStream) -> BrazeConfig:
        return self.destinations[sync.destination]

    @property
    def profile_sources(self) -> dict[str, SourceConfig]:
        """The feeds unified into customer_profiles (``profile: false`` ones are tables only)."""
        return {n: s for n, s in self.sources.items() if s.profile}
