"""``subscription_groups`` in the configuration: where it may be given, and each mistake named by
its key path."""

from __future__ import annotations

import pytest

from amp_braze.config import ConfigError, load_config
from amp_braze_tests.support.configs import FEED_ONLY, write_config

BASE = FEED_ONLY
SINGLE = (
    BASE
    + "braze:\n  rest_endpoint: http://127.0.0.1:9\n{braze}sync:\n  subscription_groups: {groups}\n"
)
MANY = (
    BASE
    + "destinations:\n  us: {{rest_endpoint: 'http://127.0.0.1:9'{dest}}}\n"
    + "  eu: {{rest_endpoint: 'http://127.0.0.1:8'}}\n"
    + "syncs:\n  a: {{destination: us{sync}}}\n  b: {{destination: {b_dest}{b}}}\n"
)


def _load(tmp_path, body: str):
    return load_config(write_config(tmp_path, body))


def _bad(tmp_path, body: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, body)
    return str(info.value).split(": ", 1)[1]  # without the file's path


def test_single_shape_and_per_sync(tmp_path):
    cfg = _load(tmp_path / "one", SINGLE.format(braze="", groups="{news: ' g-1 '}"))
    assert dict(cfg.syncs["braze"].subscription_groups) == {"news": "g-1"}  # trimmed
    body = MANY.format(dest="", sync=", subscription_groups: {news: g-1, sms: g-2}", b_dest="eu",
                       b=", subscription_groups: {news: g-1}")  # fmt: skip
    cfg = _load(tmp_path / "many", body)
    assert dict(cfg.syncs["a"].subscription_groups) == {"news": "g-1", "sms": "g-2"}
    assert dict(cfg.syncs["b"].subscription_groups) == {"news": "g-1"}  # another workspace
    assert hash(cfg.syncs["a"]) == hash(cfg.syncs["a"])
    none = _load(tmp_path / "none", MANY.format(dest="", sync="", b_dest="eu", b=""))
    assert dict(none.syncs["a"].subscription_groups) == {}


@pytest.mark.parametrize(
    ("braze", "groups", "message"),
    [
        ("", "{news: ''}", "sync.subscription_groups.news: the subscription group id must not be empty"),
        ("", "{news: 5}", "sync.subscription_groups.news: must be a string"),
        ("", "[news]", "sync.subscription_groups: must be a mapping"),
        ("", "{news: g1, sms: g1}",
         "sync.subscription_groups.sms: group 'g1' is also given to column 'news': one column per group"),
        ("  identifier: braze_id\n", "{news: g1}",
         "sync.subscription_groups: subscription groups are sent by external_id, and "
         "braze.identifier is braze_id"),
    ],
)  # fmt: skip
def test_single_shape_mistakes_name_their_key(tmp_path, braze, groups, message):
    assert _bad(tmp_path, SINGLE.format(braze=braze, groups=groups)).startswith(message)


@pytest.mark.parametrize(
    ("dest", "sync", "b_dest", "b", "message"),
    [
        ("", ", attributes: [news, email], subscription_groups: {news: g1}", "eu", "",
         "syncs.a.subscription_groups.news: column 'news' is both an attribute and a "
         "subscription group's column"),
        ("", ", subscription_groups: {news: g1, b: g1}", "eu", "",
         "syncs.a.subscription_groups.b: group 'g1' is also given to column 'news'"),
        ("", ", subscription_groups: {news: '  '}", "eu", "",
         "syncs.a.subscription_groups.news: the subscription group id must not be empty"),
        (", identifier: user_alias", ", subscription_groups: {news: g1}", "eu", "",
         "syncs.a.subscription_groups: subscription groups are sent by external_id, and "
         "destination 'us' uses identifier user_alias"),
        ("", ", subscription_groups: {news: g1}", "us", ", sql: profile.sql, subscription_groups: {optin: g1}",
         "syncs.b.subscription_groups.optin: subscription group 'g1' of destination 'us' is "
         "managed by both syncs 'a' and 'b'"),
    ],
)  # fmt: skip
def test_per_sync_mistakes_name_their_key(tmp_path, dest, sync, b_dest, b, message):
    body = MANY.format(dest=dest, sync=sync, b_dest=b_dest, b=b)
    assert _bad(tmp_path, body).startswith(message)


def test_the_sync_section_takes_no_groups_with_many_syncs(tmp_path):
    body = (
        MANY.format(dest="", sync="", b_dest="eu", b="") + "sync:\n  subscription_groups: {n: g}\n"
    )
    assert _bad(tmp_path, body) == (
        "sync.subscription_groups: with destinations: + syncs:, give subscription groups per "
        "sync (syncs.<name>.subscription_groups)"
    )
