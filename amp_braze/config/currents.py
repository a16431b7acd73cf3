"""The ``currents:`` section: where Braze Currents writes its event files, and how the sensor looks
for them. Without the section, Currents is not read."""

from __future__ import annotations

from pydantic import Field, field_validator

from amp_braze.config.section import Section
from amp_braze.config.values import bounded


class CurrentsConfig(Section):
    """The bucket and prefix Braze Currents writes to."""

    bucket: str = Field(description="The S3 bucket Braze Currents writes to.")
    prefix: str = Field("", description="The prefix (folder) within the bucket.")
    lookback_hours: bounded(int, low=1) = Field(
        48, description="How far back the sensor looks for late files, in hours."
    )
    minimum_interval_seconds: int = Field(60, description="The sensor's interval, in seconds.")
    region: str = Field("us-east-1", description="The bucket's region.")

    @field_validator("prefix")
    @classmethod
    def _no_slashes(cls, prefix: str) -> str:
        return prefix.strip("/")
