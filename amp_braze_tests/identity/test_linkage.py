"""Linkage on feeds with known truth: exact clusters, deterministic rules, junk and size guards."""

import polars as pl
import pytest

from amp_braze.config import IdentityConfig
from amp_braze.identity.records import FINGERPRINT
from amp_braze.identity.resolve import resolve
from amp_braze.identity.synthetic import RECORD_IDS, generate
from amp_braze_tests.support.link_quality import EMPTY, feeds_of

pytestmark = pytest.mark.slow  # each test links a generated brand of 1,500 people

FIELDS = {"given_name": "name", "surname": "name", "date_of_birth": "date", "email": "email",
          "phone": "phone", "postcode": "postcode", "address_1": "address"}  # fmt: skip
BLOCKING = (("surname", "given_name"), ("date_of_birth", "surname"), ("email",), ("phone",),
            ("postcode", "given_name"))  # fmt: skip


def run(feeds: dict[str, pl.DataFrame], **cfg):
    config = IdentityConfig(fields=FIELDS, blocking=BLOCKING,
                            deterministic=cfg.pop("deterministic", (("loyalty_id",),)), **cfg)  # fmt: skip
    return resolve(feeds_of(feeds), config, EMPTY, 1)


@pytest.fixture(scope="module")
def background():
    return generate(1500, seed=5)


def add(feeds: dict[str, pl.DataFrame], name: str, rows: list[dict]) -> dict[str, pl.DataFrame]:
    base = feeds[name]
    extra = pl.DataFrame(rows).with_columns(pl.lit(base["updated_at"][0]).alias("updated_at"))
    return {**feeds, name: pl.concat([base, extra], how="diagonal_relaxed")}


def clusters_of(result, records: list[str]) -> dict[str, str]:
    t = result.table.filter(pl.col("record_id").is_in(records))
    return dict(zip(t["record_id"], t["amp_id"], strict=True))


def test_people_known_by_different_systems_become_one_each(background):
    feeds = add(background.feeds, "crm", [
        {"crm_id": "C-ZOE", "given_name": "Zoë", "surname": "Quennell", "date_of_birth": "1984-02-29",
         "email": "ZOE.Q@Example.com ", "phone": "(415) 555-0192", "postcode": "94110",
         "address_1": "12 Valencia Street"},
        {"crm_id": "C-BOB", "given_name": "Robert", "surname": "Abernathy-Ixworth",
         "date_of_birth": "1960-07-04", "phone": "212 555 0147", "postcode": "10001"},
    ])  # fmt: skip
    feeds = add(feeds, "web", [
        {"account_id": "W-ZOE", "given_name": "Zoe", "surname": "Quennel", "email": "zoe.q@example.com",
         "postcode": "94110"},
        {"account_id": "W-BOB", "given_name": "Bob", "surname": "Abernathy Ixworth",
         "email": "bob.ai@example.net", "phone": "+1 212-555-0147"},
    ])  # fmt: skip
    feeds = add(feeds, "pos", [
        {"pos_id": "P-BOB", "given_name": "ROBERT", "surname": "ABERNATHY-IXWORTH",
         "phone": "2125550147", "postcode": "10001", "loyalty_id": "L-777"},
        {"pos_id": "P-ZED", "given_name": "Zed", "surname": "Quennell", "phone": "4155550999",
         "postcode": "94110"},  # same family name and postcode as Zoe: a different person
    ])  # fmt: skip
    result = run(feeds)
    ids = clusters_of(result, ["C-ZOE", "W-ZOE", "C-BOB", "W-BOB", "P-BOB", "P-ZED"])
    assert ids["C-ZOE"] == ids["W-ZOE"]  # accents, case, a typo, the same email
    assert ids["C-BOB"] == ids["W-BOB"] == ids["P-BOB"]  # nickname, hyphen, phone formats
    assert len({ids["C-ZOE"], ids["C-BOB"], ids["P-ZED"]}) == 3
    assert len(set(ids.values())) == 3  # exactly three people

    # The background people: pairwise links against the truth.
    t = result.table.join(background.truth, on=["source", "record_id"])
    pairs = lambda g: int((g["len"] * (g["len"] - 1) // 2).sum())  # noqa: E731
    both = pairs(t.group_by("amp_id", "person").len())
    precision = both / pairs(t.group_by("amp_id").len())
    recall = both / pairs(t.group_by("person").len())
    assert precision > 0.95 and recall > 0.95, (precision, recall)


def test_deterministic_rules_link_outright(background):
    feeds = add(background.feeds, "crm", [
        {"crm_id": "C-X", "given_name": "Xavier", "surname": "Oddfellow", "loyalty_id": "L-42"},
    ])  # fmt: skip
    feeds = add(feeds, "pos", [
        {"pos_id": "P-X", "given_name": "Q", "surname": "Unrelated", "loyalty_id": " L-42"},
    ])  # fmt: skip
    result = run(feeds)
    rows = result.table.filter(pl.col("record_id").is_in(["C-X", "P-X"])).sort("record_id")
    assert rows["amp_id"].n_unique() == 1
    assert rows["linked_by"].to_list() == ["loyalty_id", "loyalty_id"]
    assert rows["match_probability"].to_list() == [1.0, 1.0]
    without = run(feeds, deterministic=())
    assert without.table.filter(pl.col("record_id").is_in(["C-X", "P-X"]))["amp_id"].n_unique() == 2


def test_junk_values_link_nobody(background):
    junk = [{"account_id": f"W-J{i}", "given_name": f"Given{i}", "surname": f"Family{i}",
             "email": "test@test.com", "phone": "+1 (555) 000-1111"} for i in range(60)]  # fmt: skip
    feeds = add(background.feeds, "web", junk)
    result = run(feeds, max_records_per_value=50)
    rows = result.table.filter(pl.col("record_id").str.starts_with("W-J"))
    assert rows["amp_id"].n_unique() == 60  # sixty people, not one
    junk_table = result.records.junk
    assert junk_table.to_dicts() == [{"column": "phone", "value": "+15550001111", "records": 60}]
    # test@test.com never counts: it is a placeholder, nulled before linkage.
    assert "test@test.com" not in junk_table["value"].to_list()


def test_oversized_clusters_are_split_and_reported(background):
    chain = [{"pos_id": f"P-C{i}", "given_name": f"G{i}", "surname": f"S{i}", "loyalty_id": "L-SHARED"}
             for i in range(5)]  # fmt: skip
    result = run(add(background.feeds, "pos", chain), max_cluster_size=3)
    assert 5 in result.clustered.oversized["records"].to_list()  # the chain, reported
    rows = result.table.filter(pl.col("record_id").str.starts_with("P-C"))
    assert rows["amp_id"].n_unique() == 5 and rows["cluster_size"].to_list() == [1] * 5
    assert result.table.group_by("amp_id").len()["len"].max() <= 3


def test_one_record_per_person_keeps_a_household_apart(background):
    """Two partners share an email and a family name; a web account with that email and no
    given name could be either. With the CRM known to hold one record per person, the partners
    stay two people and the account joins one of them; without it, the account chains them."""
    household = {"surname": "Vantongeren", "email": "home.vantongeren@example.com",
                 "postcode": "30301"}  # fmt: skip
    feeds = add(background.feeds, "crm", [
        {"crm_id": "C-H1", "given_name": "Maria", "date_of_birth": "1971-03-02",
         "phone": "4045550101", **household},
        {"crm_id": "C-H2", "given_name": "Pieter", "date_of_birth": "1969-11-20",
         "phone": "4045550199", **household},
    ])  # fmt: skip
    feeds = add(feeds, "web", [{"account_id": "W-H", **household}])
    records = ["C-H1", "C-H2", "W-H"]
    apart = clusters_of(run(feeds, one_record_per_person=("crm", "pos")), records)
    assert apart["C-H1"] != apart["C-H2"]
    assert apart["W-H"] in (apart["C-H1"], apart["C-H2"])
    chained = clusters_of(run(feeds), records)
    assert len(set(chained.values())) == 1


def test_a_rerun_scores_only_new_and_changed_records_and_agrees_with_a_full_relink(background):
    """The second run gets the first run's fingerprints and links: only the new and the changed
    records are scored. Against a full re-link of the same data, nothing is dropped, and any link
    the two disagree on sits at the threshold (frequencies moved a little with the new records)."""
    config = IdentityConfig(fields=FIELDS, blocking=BLOCKING, deterministic=(("loyalty_id",),),
                            one_record_per_person=("pos", "crm"))  # fmt: skip
    feeds = feeds_of(background.feeds)
    first = resolve(feeds, config, EMPTY, 1)
    prints = first.records.table.select("source", "record_id", FINGERPRINT)
    previous = first.assignment.mapping.drop("cluster_id").join(prints, on=["source", "record_id"])

    later = generate(40, seed=77).feeds  # new people, late rows in every feed
    grown = {n: pl.concat([df, later[n].with_columns(pl.col(RECORD_IDS[n]) + "-late")])
             for n, df in background.feeds.items()}  # fmt: skip
    changed_rows = pl.int_range(pl.len()) % 100 == 3  # a new phone for 1% of the web accounts
    grown["web"] = grown["web"].with_columns(
        pl.when(changed_rows)
        .then(pl.lit("+1 555 0100 999"))
        .otherwise(pl.col("phone"))
        .alias("phone")
    )
    deleted = grown["pos"]["pos_id"].gather_every(250).to_list()
    grown["pos"] = grown["pos"].filter(~pl.col("pos_id").is_in(deleted))
    feeds = feeds_of(grown)

    again = resolve(feeds, config, previous, first.assignment.next_id, first.model, first.links)
    relink = resolve(
        feeds, config, previous.drop(FINGERPRINT), first.assignment.next_id, first.model
    )
    new_records = sum(df.height for df in later.values())
    web = background.feeds["web"]
    changed = web.filter(pl.int_range(pl.len()) % 100 == 3).height  # null -> a phone changes too
    assert again.rescored_records == new_records + changed
    assert relink.rescored_records == relink.table.height
    assert again.table.height == relink.table.height == sum(df.height for df in grown.values())
    assert not set(again.table.filter(pl.col("source") == "pos")["record_id"]) & set(deleted)

    def keyed(links: pl.DataFrame) -> pl.DataFrame:
        left = pl.concat_str("source_l", pl.lit(":"), "record_id_l")
        right = pl.concat_str("source_r", pl.lit(":"), "record_id_r")
        return links.select(pl.min_horizontal(left, right).alias("a"),
                            pl.max_horizontal(left, right).alias("b"), "match_probability")  # fmt: skip

    mine, full = keyed(again.links), keyed(relink.links)
    disagree = pl.concat([mine.join(full, on=["a", "b"], how="anti"),
                          full.join(mine, on=["a", "b"], how="anti")])  # fmt: skip
    assert (disagree["match_probability"] < config.threshold + 0.02).all(), disagree
    assert disagree.height <= 0.001 * full.height


def test_scoring_in_chunks_gives_the_links_of_one_scoring(background):
    """``score_chunks: 3``: nine pieces (three chunks of left records by three of right records)
    give exactly the pairs and probabilities of one ``predict()``, and so the same people."""
    one = run(background.feeds)
    config = IdentityConfig(fields=FIELDS, blocking=BLOCKING, deterministic=(("loyalty_id",),),
                            score_chunks=3)  # fmt: skip
    chunked = resolve(feeds_of(background.feeds), config, EMPTY, 1, one.model)
    pair = ["source_l", "record_id_l", "source_r", "record_id_r"]
    a, b = one.links.sort(pair), chunked.links.sort(pair)
    assert a.height == b.height > 1_000 and a.select(pair).equals(b.select(pair))
    assert (a["match_probability"] - b["match_probability"]).abs().max() < 1e-12
    assert chunked.model_links == one.model_links
    assert one.table.sort("source", "record_id").equals(chunked.table.sort("source", "record_id"))
