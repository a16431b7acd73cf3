"""Training the identity model: it completes on every valid input and says what it could not learn."""

import math

import polars as pl
import pytest

from amp_braze.config import IdentityConfig
from amp_braze.identity import training
from amp_braze.identity.records import prepare
from amp_braze.identity.resolve import resolve
from amp_braze.identity.synthetic import generate
from amp_braze_tests.support.link_quality import EMPTY, feeds_of, pairwise, source

EVERY_KIND = {"given_name": "name", "surname": "name", "date_of_birth": "date", "email": "email",
              "phone": "phone", "postcode": "postcode", "address_1": "address",
              "loyalty_id": "id", "town": "text", "tier": "exact"}  # fmt: skip


def probabilities(model: dict) -> list[float]:
    out = [model["probability_two_random_records_match"]]
    for comp in model["comparisons"]:
        for level in comp["comparison_levels"]:
            if not level.get("is_null_level"):
                out += [level["m_probability"], level["u_probability"]]
    return out


def level(model: dict, field: str, label: str) -> dict:
    comp = next(c for c in model["comparisons"] if c["output_column_name"] == field)
    return next(lv for lv in comp["comparison_levels"] if lv.get("label_for_charts") == label)


@pytest.mark.slow
def test_every_kind_of_comparison_trains_and_every_level_is_accounted_for():
    syn = generate(1500, seed=11)
    frames = {
        name: df.with_columns(
            pl.col("postcode").str.slice(0, 2).alias("town") if "postcode" in df.columns
            else pl.lit(None, pl.String).alias("town"),
            pl.lit("gold").alias("tier"),
        )
        for name, df in syn.feeds.items()
    }  # fmt: skip
    cfg = IdentityConfig(
        fields=EVERY_KIND,
        blocking=(("surname", "given_name"), ("email",), ("phone",), ("postcode",)),
        deterministic=(),
        one_record_per_person=("pos", "crm"),
    )
    records, absent = prepare(feeds_of(frames), cfg)
    assert not absent
    fitted = training.train(records.table, cfg)
    values = probabilities(fitted.model)
    assert all(math.isfinite(v) and 1e-300 <= v <= 1 for v in values)
    # Dates of birth and addresses are known to the CRM alone, which has one record per person,
    # so no pair of the same person shows them; "gold" for everyone is junk, nulled.
    assert fitted.untrained == ["date_of_birth", "address_1", "tier"]
    neutral = {(f.field, f.level) for f in fitted.fallbacks if f.parameter == "m"}
    for comp in fitted.model["comparisons"]:
        name = comp["output_column_name"]
        for lv in comp["comparison_levels"]:
            if lv.get("is_null_level") or name in fitted.untrained:
                continue
            held = (name, lv["label_for_charts"]) in neutral
            assert held == (lv["m_probability"] == lv["u_probability"]), (name, lv)
    # The fields that identify people are learnt, not left neutral.
    for name in ("email", "phone", "postcode", "loyalty_id", "surname", "given_name"):
        exact = next(
            lv for lv in next(
                c for c in fitted.model["comparisons"] if c["output_column_name"] == name
            )["comparison_levels"] if lv.get("label_for_charts", "").startswith("Exact")
        )  # fmt: skip
        assert math.log2(exact["m_probability"] / exact["u_probability"]) > 3, name
    rules = [s.rule for s in fitted.sessions]
    assert rules == [("surname", "given_name"), ("phone",)]  # two blocks train every field
    assert all(s.converged and s.skipped is None for s in fitted.sessions)


@pytest.mark.slow
def test_a_field_that_only_different_people_share_is_left_neutral_and_reported():
    # "club" is known to the CRM only, which has one record per person: two club values only
    # ever meet in pairs of different people, so matching pairs never show that comparison.
    syn = generate(1500, seed=3)
    feeds = dict(syn.feeds)
    crm = feeds["crm"]
    feeds["crm"] = crm.with_columns(pl.format("club{}", pl.int_range(pl.len()) % 40).alias("club"))
    cfg = IdentityConfig(
        fields={"given_name": "name", "surname": "name", "email": "email", "phone": "phone",
                "club": "exact"},
        blocking=(("surname", "given_name"), ("phone",), ("email",)),
        deterministic=(("loyalty_id",),),
    )  # fmt: skip
    result = resolve(feeds_of(feeds), cfg, EMPTY, 1)
    assert result.trained
    assert result.training["untrained"] == ["club"]
    club = next(f for f in result.training["fallbacks"] if f["field"] == "club")
    assert "too few matching pairs" in club["reason"]
    exact = level(result.model, "club", "Exact match on club")
    assert exact["m_probability"] == exact["u_probability"] and exact["tf_adjustment_weight"] == 0
    # The rest of the model still links people: the known truth, pairwise.
    q = pairwise(result.table, syn.truth)
    assert q["recall"] > 0.95 and q["precision"] > 0.99, q


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_tiny_inputs_train_to_a_usable_model(rows):
    feed = pl.DataFrame(
        {
            "crm_id": [f"C{i}" for i in range(rows)],
            "given_name": ["Ada"] * rows,
            "surname": ["Lovelace", "Byron", "King", "Lovelace", "Noel"][:rows],
            "email": [None] * rows,  # a field nobody has
            "phone": ["+1 212 555 0100"] + [None] * (rows - 1),
            "updated_at": [None] * rows,
        },
        schema_overrides={"email": pl.String, "updated_at": pl.Datetime("us", "UTC")},
    )
    cfg = IdentityConfig(
        fields={"given_name": "name", "surname": "name", "email": "email", "phone": "phone"},
        blocking=(("email",), ("surname", "given_name")),
        deterministic=(),
    )
    result = resolve({"crm": (source("crm"), feed.lazy())}, cfg, EMPTY, 1)
    assert result.table.height == rows
    assert all(math.isfinite(v) and 1e-300 <= v <= 1 for v in probabilities(result.model))
    assert set(result.training["untrained"]) >= {"email"}
    sessions = {tuple(s["rule"]): s for s in result.training["sessions"]}
    assert sessions[("email",)]["skipped"] == "the rule made no pairs in the training sample"
    assert result.table["amp_id"].n_unique() == rows  # nothing to link them by
