"""A merge of two people's amp_ids reaches Braze: one profile left, and the sync state follows."""

import polars as pl
import pytest

from amp_braze.config import load_config
from amp_braze.identity.synthetic import generate
from amp_braze.profiles.unify import unify, with_amp_ids
from amp_braze.storage import Storage
from amp_braze.sync.verify import compare
from amp_braze_tests.support.brand import Brand
from amp_braze_tests.support.configs import write_config

CONFIG = """
storage: ./store
sources:
  crm: {{path: crm.parquet, record_id: crm_id, updated_at: updated_at}}
  pos: {{path: pos.parquet, record_id: pos_id, updated_at: updated_at}}
  web: {{path: web.parquet, record_id: account_id, updated_at: updated_at}}
identity:
  fields: {{given_name: name, surname: name, date_of_birth: date, email: email, phone: phone,
           postcode: postcode}}
  blocking: [[surname, given_name], [email], [phone]]
  deterministic: [[loyalty_id], [email]]
profile_sql: profile.sql
braze:
  rest_endpoint: {url}
  on_removed_user: unset
"""
SQL = """SELECT amp_id AS external_id, email, given_name AS first_name, surname AS last_name,
                postcode AS home_city, lifetime_value FROM customer_profiles"""


def write_feeds(folder, extra: dict[str, list[dict]]) -> None:
    feeds = generate(150, seed=3).feeds
    for name, df in feeds.items():
        rows = extra.get(name, [])
        if rows:
            more = pl.DataFrame(rows).with_columns(pl.lit(df["updated_at"][0]).alias("updated_at"))
            df = pl.concat([df, more], how="diagonal_relaxed")
        df.write_parquet(folder / f"{name}.parquet")


DAY_ONE = {
    "pos": [{"pos_id": "P-X", "given_name": "Carla", "surname": "Dee", "loyalty_id": "L-X",
             "lifetime_value": 250.0}],
    "web": [{"account_id": "W-X", "given_name": "Carly", "surname": "Dee-Ennis",
             "email": "zz.carla@example.org"}],
}  # fmt: skip
BRIDGE = {"crm": [{"crm_id": "C-X", "given_name": "Carla", "surname": "Dee-Ennis",
                   "email": "zz.carla@example.org", "loyalty_id": "L-X"}]}  # fmt: skip


def ids_for(storage: Storage, records: list[str]) -> dict[str, str]:
    t = storage.read_table("identity_clusters").filter(pl.col("record_id").is_in(records))
    return dict(zip(t["record_id"], t["amp_id"], strict=True))


@pytest.mark.slow
def test_merge_reaches_braze_and_the_state_follows(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("BRAZE_API_KEY", emulator.key)
    path = write_config(tmp_path, CONFIG.format(url=emulator.url), SQL)
    write_feeds(tmp_path, DAY_ONE)
    cfg = load_config(path)
    brand = Brand(tmp_path, cfg, Storage(cfg.storage))

    _, day1 = brand.sync()
    clusters = brand.storage.read_table("identity_clusters")
    assert day1["identity_clusters"]["clusters"] == clusters["amp_id"].n_unique()
    assert day1["identity_clusters"]["records"] == clusters.height
    assert "nobody (alone)" in [
        r["linked by"] for r in day1["identity_clusters"]["records_by_link"]
    ]
    ids = ids_for(brand.storage, ["P-X", "W-X"])
    kept, absorbed = ids["P-X"], ids["W-X"]  # two people as far as anyone can tell yet
    assert kept < absorbed  # P-X's id was made first (records are numbered by feed, then id)
    users = emulator.users()
    assert {kept, absorbed} <= set(users)
    assert users[absorbed]["custom_attributes"] == {}  # web knows no lifetime value
    assert users[kept]["custom_attributes"]["lifetime_value"] == 250.0

    # The CRM record shares the web account's email and the loyalty number: one person.
    write_feeds(tmp_path, DAY_ONE | BRIDGE)
    _, day2 = brand.sync()
    ids = ids_for(brand.storage, ["P-X", "W-X", "C-X"])
    assert set(ids.values()) == {kept}  # the merged cluster keeps the older id
    assert day2["identity_clusters"]["ids_merged"] == 1
    assert day2["braze_sync"]["users_merged"] == 1
    users = emulator.users()
    assert absorbed not in users  # one profile left for the person
    assert emulator.stats()["users_merged"] == 1
    merged = users[kept]
    assert merged["email"] == "zz.carla@example.org"  # filled from the absorbed profile or sent
    result = compare(
        brand.config, brand.storage, list(users.values()), list(brand.config.syncs.values())
    )
    assert result.equal, (result.missing[:3], result.different[:3], result.unexpected[:3])
    # customer_profiles was rebuilt for the changed customers only, and equals a full unify.
    assert day2["customer_profiles"]["rebuild"] == "changed customers only"
    store = brand.storage
    feeds = {n: (src, store.scan_table(f"sources/{n}")) for n, src in cfg.profile_sources.items()}
    full = unify(with_amp_ids(feeds, store.scan_table("identity_clusters"))).profiles
    assert store.read_table("customer_profiles").equals(full)

    # The state followed the merge: nothing left to send, no unset for the absorbed id.
    _, day3 = brand.sync()
    assert day3["braze_sync"]["data_points"] == 0 and day3["braze_sync"]["users_merged"] == 0
    assert absorbed not in emulator.users()
