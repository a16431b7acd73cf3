"""Expectation maximisation for the identity model: every m stays above 0, however long it runs."""

import math

import numpy as np

from amp_braze.identity import em


def test_a_level_only_non_matches_show_keeps_a_positive_m_however_long_em_runs(monkeypatch):
    # Comparisons 0 and 2 agree (gamma 1) on the matches; comparison 1's agreement level appears
    # only in pairs that the other two call non-matches. Maximum likelihood drives its m to 0 by
    # a constant factor per iteration, which Splink 5 refuses once it is below 1e-300.
    gammas = np.array([[1, 0, 1], [1, -1, 1], [0, 1, 0], [0, 0, 0], [0, 0, 1], [1, 0, 0]])
    counts = np.array([500.0, 300.0, 40.0, 100_000.0, 200.0, 20.0])
    u = [np.array([0.99, 0.01]), np.array([0.999, 0.001]), np.array([0.99, 0.01])]
    m0 = [np.array([0.5, 0.5])] * 3
    result = em.expectation_maximisation(gammas, counts, u, m0, 0.01, max_iterations=2000)
    assert result.converged
    m = result.m[1][1]
    assert 1e-12 < m and math.log2(m / u[1][1]) > -20  # bounded by the prior, not an underflow
    assert result.evidence[1][1] < 1e-3  # ... and the evidence says no match showed it
    assert result.m[0][1] > 0.99 and result.m[2][1] > 0.99  # the deciding comparisons
    assert em.unestimable(result.evidence[1]).tolist() == [False, True]  # held neutral
    # Without the prior, the same data walks to 0 (the failure the demo met at 10,000 people).
    monkeypatch.setattr(em, "PRIOR_PAIRS", 0.0)
    with np.errstate(all="ignore"):
        mle = em.expectation_maximisation(gammas, counts, u, m0, 0.01, max_iterations=40)
    assert mle.m[1][1] < 1e-30
