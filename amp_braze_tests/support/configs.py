"""A project folder for a test: amp_braze.yaml, the profile SQL it names, and the smallest
configuration that loads."""

from __future__ import annotations

import textwrap
from pathlib import Path

FEED_ONLY = """
storage: ./store
sources:
  pos:
    path: pos.csv
    customer_key: customer_id
    updated_at: updated_at
profile_sql: profile.sql
"""
MINIMAL = (
    FEED_ONLY
    + """braze:
  rest_endpoint: http://127.0.0.1:9
"""
)


def write_config(folder: Path, body: str, sql: str | None = None) -> Path:
    """Write amp_braze.yaml (and the profile SQL it names) into a folder; returns the YAML's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profile.sql").write_text(
        sql or "SELECT customer_id AS external_id FROM customer_profiles"
    )
    path = folder / "amp_braze.yaml"
    path.write_text(textwrap.dedent(body))
    return path
