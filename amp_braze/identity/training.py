"""Training the identity model so that it cannot fail on valid data, and says what it could not learn.

Splink gives the comparisons, the u probabilities (random sampling) and the scoring; the m
probabilities are estimated here, by expectation maximisation (``em``) on the counts of agreement
patterns (``agreement_patterns``) in each training block's pairs. Splink's own EM is a maximum-likelihood estimate, and that has no
floor: when every pair of a block that shows some level is a non-match by the other fields (in the
demo at 10,000 people, pairs that share a first and last name are mostly different people, and the
few with a date of birth on both sides agreed on it), the likelihood is highest at m = 0 for that
level, EM walks there by a constant factor per iteration, and Splink 5 refuses the value once it is
below 1e-300. Here each m is the posterior mean under a weak prior (``PRIOR_PAIRS`` pseudo matching
pairs spread like u), so none reaches 0; a level, or a whole comparison, that too few matching
pairs showed is held neutral (m = u: a Bayes factor of 1) and reported, not guessed; pairs that
cannot be one person (two records of a feed with one record per person) are left out. The model
stays a Splink JSON document.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from amp_braze.config import IdentityConfig
from amp_braze.identity.agreement_patterns import agreement_patterns, blocked_pairs
from amp_braze.identity.em import (
    MIN_COMPARISON_PAIRS,
    MIN_LEVEL_PAIRS,
    expectation_maximisation,
    initial_m,
    unestimable,
)
from amp_braze.identity.linkage import SPLINK_ROW_ID, database_api, other_name, settings
from amp_braze.identity.standardize import CANONICAL_SUFFIX

TRAIN_RECORDS = 300_000  # the model is trained on a sample this large; scoring uses every record
MAX_U_PAIRS = 2_000_000  # random pairs for u
MAX_SESSIONS = 4  # EM sessions (training blocks) at most
RECALL = 0.95  # of the strong rules, for the share of random pairs that match


@dataclass(frozen=True)
class Fallback:
    """A parameter the training sample could not estimate, and what stands in for it."""

    field: str  # the comparison (an identity field), or "" for the model as a whole
    level: str
    parameter: str  # "m", "u" or "lambda"
    value: float
    reason: str


@dataclass
class Session:
    """One EM session: the pairs one training blocking rule made."""

    rule: tuple[str, ...]
    pairs: int
    patterns: int
    iterations: int
    converged: bool
    expected_matches: float
    trained: list[str]  # comparisons this session estimated
    skipped: str | None = None  # why it estimated nothing


@dataclass
class Trained:
    model: dict[str, Any]  # Splink's JSON document, ready to score with
    fallbacks: list[Fallback] = field(default_factory=list)
    untrained: list[str] = field(default_factory=list)  # comparisons left neutral entirely
    sessions: list[Session] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """What is stored beside the model and shown in the identity_clusters metadata."""
        return {
            "fallbacks": [asdict(f) for f in self.fallbacks],
            "untrained": self.untrained,
            "sessions": [asdict(s) for s in self.sessions],
        }


@dataclass(frozen=True)
class _Comparison:
    """A comparison's non-null levels, indexed by Splink's comparison vector value (gamma):
    gamma L-1 is the first (strictest) level of the JSON document, gamma 0 the ELSE level."""

    name: str
    labels: list[str]  # by gamma
    json_index: list[int]  # by gamma: the level's position in comparison_levels


def _comparisons(model: dict[str, Any]) -> list[_Comparison]:
    out = []
    for comp in model["comparisons"]:
        levels = [(i, lv) for i, lv in enumerate(comp["comparison_levels"])]
        nonnull = [(i, lv) for i, lv in levels if not lv.get("is_null_level")]
        by_gamma = list(reversed(nonnull))
        out.append(
            _Comparison(
                name=comp["output_column_name"],
                labels=[lv.get("label_for_charts") or lv["sql_condition"] for _, lv in by_gamma],
                json_index=[i for i, _ in by_gamma],
            )
        )
    return out


def _level(model: dict[str, Any], c: int, comp: _Comparison, gamma: int) -> dict[str, Any]:
    return model["comparisons"][c]["comparison_levels"][comp.json_index[gamma]]


def strong_rules(cfg: IdentityConfig) -> list[tuple[str, ...]]:
    """Rules that almost only pair the same person: to estimate how many pairs match at all."""
    kinds = cfg.fields
    names = tuple(c for c, k in kinds.items() if k == "name")
    dates = [c for c, k in kinds.items() if k == "date"]
    ids = [(c,) for c, k in kinds.items() if k in ("email", "id")]
    if names and dates:
        return [names + (dates[0],)] + ids
    return ids or [tuple(kinds)]


def em_rules(cfg: IdentityConfig) -> list[tuple[str, ...]]:
    """Training blocks in the order they are tried: the configured blocking rules, those on an
    email last. Households share one address, and pairs found through it would teach the model
    that matching people often have different names, so an email block is used only for what
    no other block could train."""
    on_email = [r for r in cfg.blocking if any(cfg.fields.get(c) == "email" for c in r)]
    return [r for r in cfg.blocking if r not in on_email] + on_email


def _comparison_columns(cfg: IdentityConfig, name: str) -> set[str]:
    """The record columns a comparison reads (a name's swapped level reads the other name)."""
    cols = {name}
    if cfg.fields[name] == "name":
        cols.add(name + CANONICAL_SUFFIX)
        other = other_name(cfg, name)
        if other:
            cols.add(other)
    return cols


def _random_pairs(n: int) -> int:
    return min(MAX_U_PAIRS, n * (n - 1) // 2)


def _u_values(
    model: dict[str, Any], comps: list[_Comparison], sampled_pairs: int, out: list[Fallback]
) -> list[np.ndarray]:
    """u per level from Splink's random sampling; a level no random pair showed gets half a pair
    of the sample (it is rarer than one in ``sampled_pairs``)."""
    floor = 1.0 / (2.0 * max(sampled_pairs, 1))
    values = []
    for c, comp in enumerate(comps):
        u = np.zeros(len(comp.labels))
        for g in range(len(comp.labels)):
            level = _level(model, c, comp, g)
            value = level.get("u_probability")
            if not isinstance(value, int | float) or not value > 0:
                value = floor
                out.append(
                    Fallback(
                        comp.name,
                        comp.labels[g],
                        "u",
                        floor,
                        f"no pair of the {sampled_pairs:,} sampled at random showed it: "
                        "u is taken as half a pair of them",
                    )
                )
            u[g] = value
        values.append(u / u.sum())
    return values


def _lambda(sample: pl.DataFrame, cfg: IdentityConfig, out: list[Fallback]) -> float:
    """The share of random pairs that match, from the pairs the strong rules make."""
    from splink import block_on
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    n = sample.height
    total = n * (n - 1) / 2
    db = database_api()
    records = count_comparisons_from_blocking_rules(
        db.register(sample.to_arrow()),
        blocking_rules=[block_on(*r) for r in strong_rules(cfg)],
        link_type="dedupe_only",
        unique_id_column_name=SPLINK_ROW_ID,
        record_sample_proportion=1.0,
    )
    observed = float(records[-1]["cumulative_comparison_count"]) if records else 0.0
    if observed == 0:
        value = 1.0 / max(n, 2)
        out.append(
            Fallback(
                "",
                "probability two random records match",
                "lambda",
                value,
                "no pair agreed on a strong rule: taken as one match per record",
            )
        )
        return value
    return min(observed / RECALL, total / 2) / total


def train(records: pl.DataFrame, cfg: IdentityConfig, seed: int = 42) -> Trained:
    """Train without labels. Never raises for a model reason: what the sample cannot estimate is
    neutral and listed in ``fallbacks`` (levels) and ``untrained`` (whole comparisons)."""
    from splink import Linker

    sample = records.sample(min(records.height, TRAIN_RECORDS), seed=seed, shuffle=False)
    fallbacks: list[Fallback] = []
    db = database_api()
    linker = Linker(db.register(sample.to_arrow()), settings(cfg), log_level=logging.ERROR)
    if sample.height >= 2:
        linker.training.estimate_u_using_random_sampling(max_pairs=MAX_U_PAIRS, seed=seed)
    model = linker.misc.save_model_to_json()
    comps = _comparisons(model)
    u = _u_values(model, comps, _random_pairs(sample.height), fallbacks)
    lam = _lambda(sample, cfg, fallbacks) if sample.height >= 2 else 1.0 / 2
    # Per comparison: sum over sessions of (evidence-weighted m) and of evidence.
    m_sum = [np.zeros(len(x)) for x in u]
    weight_sum = [np.zeros(len(x)) for x in u]
    evidence_sum = [np.zeros(len(x)) for x in u]
    # A block cannot train the comparisons of its own columns, so at least two are needed: a
    # further block is tried while some comparison has not yet been active in a block that made
    # pairs (one that was, and is still untrained, lacks matching pairs, not a block).
    sessions: list[Session] = []
    tried: set[str] = set()
    for rule in em_rules(cfg):
        could = {c.name for c in comps if not (_comparison_columns(cfg, c.name) & set(rule))}
        if len(sessions) == MAX_SESSIONS or tried >= {c.name for c in comps}:
            break
        if not could - tried:
            continue
        sessions.append(
            _session(sample, cfg, model, rule, comps, u, lam, seed, m_sum, weight_sum, evidence_sum)
        )
        if sessions[-1].pairs:
            tried |= could
    untrained = []
    for c, comp in enumerate(comps):
        estimated = weight_sum[c] > 0  # free in at least one session that trained it
        if not estimated.any():
            untrained.append(comp.name)
        # Neutral levels get m = u (a Bayes factor of 1); a comparison's m then need not add up
        # to 1, which scoring does not require (it reads m / u per level).
        final = np.where(estimated, m_sum[c] / np.where(estimated, weight_sum[c], 1), u[c])
        for g in range(len(comp.labels)):
            level = _level(model, c, comp, g)
            level["u_probability"] = float(u[c][g])
            level["m_probability"] = float(final[g])
            if estimated[g]:
                continue
            level["tf_adjustment_weight"] = 0.0  # neutral means no frequency evidence either
            if estimated.any():
                fallbacks.append(
                    Fallback(
                        comp.name,
                        comp.labels[g],
                        "m",
                        float(final[g]),
                        f"{evidence_sum[c][g]:.2g} expected matching pairs showed it in "
                        f"training (needs {MIN_LEVEL_PAIRS:g}): neutral, m = u",
                    )
                )
    for name in untrained:
        fallbacks.append(
            Fallback(
                name,
                "every level",
                "m",
                float("nan"),
                "too few matching pairs had it on both sides in any training block "
                f"(needs {MIN_COMPARISON_PAIRS:g}): the comparison is neutral, m = u",
            )
        )
    model["probability_two_random_records_match"] = float(lam)
    _check(model)
    return Trained(model=model, fallbacks=fallbacks, untrained=untrained, sessions=sessions)


def _session(
    sample: pl.DataFrame,
    cfg: IdentityConfig,
    model: dict[str, Any],
    rule: tuple[str, ...],
    comps: list[_Comparison],
    u: list[np.ndarray],
    lam: float,
    seed: int,
    m_sum: list[np.ndarray],
    weight_sum: list[np.ndarray],
    evidence_sum: list[np.ndarray],
) -> Session:
    """EM on the pairs of one rule, twice: free, then with the levels it could not estimate
    held neutral so they do not bend the rest; adds this session's estimates to the sums."""
    gammas, counts, pairs = agreement_patterns(sample, model, rule, seed, cfg.one_record_per_person)
    unsampled = blocked_pairs(sample, rule)
    blocked = set(rule)
    active = [
        c for c, comp in enumerate(comps) if not (_comparison_columns(cfg, comp.name) & blocked)
    ]
    if pairs == 0 or not active:
        why = "the rule made no pairs in the training sample" if pairs == 0 else "no comparison"
        return Session(rule, pairs, 0, 0, False, 0.0, [], skipped=why)
    g = gammas[:, active]
    ua = [u[c] for c in active]
    m0 = [initial_m(len(x)) for x in ua]
    # Within the block matches are far more common than among random pairs.
    lam0 = min(lam * sample.height * (sample.height - 1) / 2 / max(unsampled, 1), 0.5)
    first = expectation_maximisation(g, counts, ua, m0, lam0)
    frozen, start = [], []
    for i, _ in enumerate(active):
        fz = unestimable(first.evidence[i])
        frozen.append(fz)
        start.append(np.where(fz, ua[i], first.m[i]))
    result = expectation_maximisation(g, counts, ua, start, first.lam, frozen)
    trained = []
    for i, c in enumerate(active):
        if frozen[i].all():
            continue
        n_c = float(result.evidence[i].sum())
        free = ~frozen[i]
        m_sum[c][free] += n_c * result.m[i][free]
        weight_sum[c][free] += n_c
        evidence_sum[c] += result.evidence[i]
        trained.append(comps[c].name)
    return Session(
        rule=rule,
        pairs=pairs,
        patterns=int(g.shape[0]),
        iterations=first.iterations + result.iterations,
        converged=first.converged and result.converged,
        expected_matches=float(result.lam * counts.sum()),
        trained=trained,
    )


def _check(model: dict[str, Any]) -> None:
    """Every probability Splink will read is a finite number in (0, 1]."""
    values = [model["probability_two_random_records_match"]]
    for comp in model["comparisons"]:
        for level in comp["comparison_levels"]:
            if not level.get("is_null_level"):
                values += [level["m_probability"], level["u_probability"]]
    bad = [v for v in values if not (math.isfinite(v) and 1e-300 <= v <= 1.0)]
    if bad:
        raise AssertionError(f"identity training produced probabilities out of range: {bad[:3]}")
