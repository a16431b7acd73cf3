"""Identity trained and scored on generated brands of every size a user may start with.

Two generators: the held-out mix of ``identity.synthetic`` (a corruption mix the model was not
tuned on), held to the pairwise F1 floor the benchmark holds (0.99); and the demo's own brand
(``profiles.sample_data``, what ``amp-braze demo`` runs on), on which training failed at 3k, 5k,
10k, 20k and 50k people with Splink 5's "m_probability ... below the minimum allowed value"
before training was guarded; it is held to the floor it reached where training did complete
(F1 0.97, precision 0.999: about 4% of its people share no email, phone or loyalty number
between their records and stay in pieces).
"""

from __future__ import annotations

import pytest

from amp_braze.config import BUNDLED_CONFIG, load_config
from amp_braze.identity.resolve import resolve
from amp_braze.identity.synthetic import CONFIG, HELD_OUT, generate
from amp_braze.profiles.database_feed import read_source
from amp_braze.profiles.sample_data import generate as demo_brand
from amp_braze_tests.support.link_quality import EMPTY, demo_truth, feeds_of, pairwise

SIZES = (1_000, 3_000, 5_000, 10_000, 20_000, 50_000)
SEEDS = (1, 2, 3)
# Every size, three seeds up to 10k and one above (CI's 20-minute budget; the benchmark
# ``python -m benchmarks identity-sweep`` runs every seed at every size).
CASES = [(n, s) for n in SIZES for s in SEEDS if n <= 10_000 or s == SEEDS[0]]
HELD_OUT_F1 = 0.99
DEMO_F1, DEMO_PRECISION = 0.97, 0.999


@pytest.mark.slow
@pytest.mark.parametrize(("people", "seed"), CASES)
def test_held_out_brand_trains_and_links_above_the_floor(people, seed):
    syn = generate(people, seed, HELD_OUT)
    result = resolve(feeds_of(syn.feeds), CONFIG, EMPTY, 1)
    assert result.trained and result.training["untrained"] == ["date_of_birth", "address_1"]
    q = pairwise(result.table, syn.truth)
    assert q["f1"] >= HELD_OUT_F1, q


@pytest.mark.slow
@pytest.mark.parametrize(("people", "seed"), CASES)
def test_demo_brand_trains_and_links_above_the_floor(people, seed, tmp_path, monkeypatch):
    demo_brand(tmp_path / ".amp_braze/demo_data", customers=people, seed=seed, shared_key=False)
    monkeypatch.setenv("AMP_BRAZE_HOME", str(tmp_path))
    cfg = load_config(BUNDLED_CONFIG)
    assert cfg.identity is not None
    feeds = {name: (src, read_source(src).lazy()) for name, src in cfg.profile_sources.items()}
    result = resolve(feeds, cfg.identity, EMPTY, 1)
    assert result.trained
    assert result.training["untrained"] == []  # every field is present in two feeds
    q = pairwise(result.table, demo_truth(result.table))
    assert q["f1"] >= DEMO_F1 and q["precision"] >= DEMO_PRECISION, q
