"""The Currents bucket as a resource: where Braze writes Currents files and how far back to look,
handing out an S3 client (dagster-aws's S3Resource, so the usual AWS variables and
``AWS_ENDPOINT_URL`` apply). Imported only when Currents are configured: dagster_aws is a heavy
import for every step process of a code location without them."""

from __future__ import annotations

from dagster_aws.s3 import S3Resource

from amp_braze.config import CurrentsConfig


class CurrentsBucket(S3Resource):
    """The bucket and prefix Braze writes Currents files to."""

    bucket: str
    prefix: str = ""
    lookback_hours: int = 48

    @classmethod
    def of(cls, cur: CurrentsConfig) -> CurrentsBucket:
        return cls(
            bucket=cur.bucket,
            prefix=cur.prefix,
            lookback_hours=cur.lookback_hours,
            region_name=cur.region,
        )
