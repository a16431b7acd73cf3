"""The Currents tests' fixture: a Currents setup over a fresh bucket on the moto server."""

from __future__ import annotations

import pytest

from amp_braze_tests.support.currents import Currents


@pytest.fixture
def currents(tmp_path, s3_bucket) -> Currents:
    return Currents(tmp_path, s3_bucket)
