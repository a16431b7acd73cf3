"""Fellegi-Sunter expectation maximisation over agreement patterns, with a floor under every m.

Maximum likelihood has no floor: a level that only non-matching pairs show is driven to m = 0 by
a constant factor per iteration. Here each m is the posterior mean under a weak prior
(``PRIOR_PAIRS`` pseudo matching pairs spread like u), so none reaches 0, and ``unestimable``
says which levels too few matching pairs showed to be estimated at all (``training`` holds them
neutral). Plain numpy over pattern counts: no Splink, no data frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_ITERATIONS = 100  # per pass; each is a few array operations on the pattern counts
CONVERGENCE = 1e-4  # EM stops when no m moves by more than this
PRIOR_PAIRS = 1.0  # pseudo matching pairs per comparison, spread as u: m never reaches 0
MIN_LEVEL_PAIRS = 1.0  # a level needs this many expected matching pairs to have its m estimated
MIN_COMPARISON_PAIRS = 10.0  # a comparison needs this many with a value on both sides


@dataclass
class EMResult:
    m: list[np.ndarray]  # per comparison, by gamma
    evidence: list[np.ndarray]  # expected matching pairs per level, by gamma
    lam: float
    iterations: int
    converged: bool


def expectation_maximisation(
    gammas: np.ndarray,
    counts: np.ndarray,
    u: list[np.ndarray],
    m0: list[np.ndarray],
    lam0: float,
    frozen: list[np.ndarray] | None = None,
    max_iterations: int = MAX_ITERATIONS,
) -> EMResult:
    """Fellegi-Sunter EM over agreement patterns (rows of ``gammas``, -1 for null, each seen
    ``counts`` times), u fixed. Each m is the posterior mean under ``PRIOR_PAIRS`` pseudo matching
    pairs spread like u; ``frozen`` levels keep their m, and the free ones of a comparison add up
    to 1 among themselves."""
    k, n_comp = gammas.shape
    frozen = frozen or [np.zeros(len(x), bool) for x in u]
    m = [x.astype(float).copy() for x in m0]
    log_u = [np.log(x) for x in u]
    lam = float(min(max(lam0, 1e-9), 1 - 1e-9))
    total = float(counts.sum())
    evidence = [np.zeros(len(x)) for x in u]
    converged, iterations = False, 0
    while iterations < max_iterations:
        iterations += 1
        log_bf = np.zeros(k)
        for c in range(n_comp):
            g = gammas[:, c]
            seen = g >= 0
            log_bf[seen] += np.log(m[c])[g[seen]] - log_u[c][g[seen]]
        logit = np.clip(math.log(lam) - math.log1p(-lam) + log_bf, -700.0, 700.0)
        weight = counts / (1.0 + np.exp(-logit))  # expected matching pairs per pattern
        new_m = []
        for c in range(n_comp):
            g = gammas[:, c]
            seen = g >= 0
            e = np.bincount(g[seen], weights=weight[seen], minlength=len(u[c]))
            evidence[c] = e
            raw = e + PRIOR_PAIRS * u[c]
            free = ~frozen[c]
            mc = m[c].copy()
            if free.any():
                mc[free] = raw[free] / raw[free].sum()
            new_m.append(mc)
        lam = float(min(max(weight.sum() / total, 1e-9), 1 - 1e-9))
        change = max(float(np.abs(a - b).max()) for a, b in zip(new_m, m, strict=True))
        m = new_m
        if change < CONVERGENCE:
            converged = True
            break
    return EMResult(m=m, evidence=evidence, lam=lam, iterations=iterations, converged=converged)


def unestimable(evidence: np.ndarray) -> np.ndarray:
    """Levels (by gamma) whose m the sample cannot estimate. With too few matching pairs that
    have the field on both sides, none; otherwise an agreement level that fewer than
    ``MIN_LEVEL_PAIRS`` of them showed (a typo level, a nickname level): held neutral, between
    what total disagreement and exact agreement say. The ELSE level (gamma 0) is always
    estimated when the comparison is: its absence among many matches is the evidence itself,
    and the prior keeps its m above 0."""
    if evidence.sum() < MIN_COMPARISON_PAIRS:
        return np.ones(len(evidence), bool)
    out = evidence < MIN_LEVEL_PAIRS
    out[0] = False
    return out


def initial_m(levels: int) -> np.ndarray:
    """A starting point that ranks the strictest level highest (gamma L-1) and ELSE lowest."""
    m = 0.5 ** np.arange(levels, 0, -1, dtype=float)
    return m / m.sum()
