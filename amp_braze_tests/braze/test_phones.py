"""Phone numbers from every country to E.164: written the ways people write them, read in the
feed's region, each distinct number parsed once; the vectorised parse agrees with libphonenumber."""

from __future__ import annotations

import random

import phonenumbers
import polars as pl
import pytest
from phonenumbers.phonemetadata import PhoneMetadata

from amp_braze.braze import normalize, phones

WRITTEN = [
    # Great Britain: trunk 0, brackets, dots, dashes, +44 (0), 00, extensions, no trunk 0 at all
    ("GB", "020 7946 0958", "+442079460958"),
    ("GB", "(020) 7946-0958", "+442079460958"),
    ("GB", "020.7946.0958", "+442079460958"),
    ("GB", "+44 20 7946 0958", "+442079460958"),
    ("GB", "+44 (0)20 7946 0958", "+442079460958"),
    ("GB", "0044 20 7946 0958", "+442079460958"),
    ("GB", "07911 123456", "+447911123456"),
    ("GB", "020 7946 0958 ext. 12", "+442079460958"),
    ("GB", "020 7946 0958 x12", "+442079460958"),
    ("GB", "2079460958", "+442079460958"),
    # Germany: area codes of different lengths, the slash, +49 (0), 0049
    ("DE", "030 1234567", "+49301234567"),
    ("DE", "030/1234567", "+49301234567"),
    ("DE", "(030) 123 45 67", "+49301234567"),
    ("DE", "+49 30 1234567", "+49301234567"),
    ("DE", "0049 30 1234567", "+49301234567"),
    ("DE", "0151 23456789", "+4915123456789"),
    ("DE", "+49 (0)151 2345 6789", "+4915123456789"),
    ("DE", "089 12345678", "+498912345678"),
    # France: pairs, dots, no spaces, +33 (0), 0033
    ("FR", "01 23 45 67 89", "+33123456789"),
    ("FR", "01.23.45.67.89", "+33123456789"),
    ("FR", "0123456789", "+33123456789"),
    ("FR", "+33 1 23 45 67 89", "+33123456789"),
    ("FR", "+33 (0)1 23 45 67 89", "+33123456789"),
    ("FR", "06 12 34 56 78", "+33612345678"),
    ("FR", "0033 6 12 34 56 78", "+33612345678"),
    # Japan: dashes, a mobile, freephone, 010 (Japan's own international prefix)
    ("JP", "03-1234-5678", "+81312345678"),
    ("JP", "(03) 1234-5678", "+81312345678"),
    ("JP", "090-1234-5678", "+819012345678"),
    ("JP", "+81 3 1234 5678", "+81312345678"),
    ("JP", "0120-123-456", "+81120123456"),
    ("JP", "010 44 20 7946 0958", "+442079460958"),
    # Australia: (02), a mobile, +61 (0), 0011 (Australia's international prefix)
    ("AU", "(02) 9876 5432", "+61298765432"),
    ("AU", "02 9876 5432", "+61298765432"),
    ("AU", "0412 345 678", "+61412345678"),
    ("AU", "+61 412 345 678", "+61412345678"),
    ("AU", "+61 (0)2 9876 5432", "+61298765432"),
    ("AU", "0011 44 20 7946 0958", "+442079460958"),
    # Brazil: mobiles with the ninth digit, the trunk 0, landlines
    ("BR", "(11) 91234-5678", "+5511912345678"),
    ("BR", "11 91234 5678", "+5511912345678"),
    ("BR", "+55 11 91234-5678", "+5511912345678"),
    ("BR", "0 11 91234 5678", "+5511912345678"),
    ("BR", "(21) 2345-6789", "+552123456789"),
    # India: mobiles with and without the trunk 0, a Delhi landline, 0091
    ("IN", "098765 43210", "+919876543210"),
    ("IN", "98765 43210", "+919876543210"),
    ("IN", "+91 98765 43210", "+919876543210"),
    ("IN", "011 2345 6789", "+911123456789"),
    ("IN", "0091 98765 43210", "+919876543210"),
    # United States: five national ways, 1-, +1, 011 and 00 abroad, extensions, a Canadian number
    ("US", "(415) 555-0132", "+14155550132"),
    ("US", "415.555.0132", "+14155550132"),
    ("US", "415-555-0132", "+14155550132"),
    ("US", "4155550132", "+14155550132"),
    ("US", "+1 415 555 0132", "+14155550132"),
    ("US", "1-415-555-0132", "+14155550132"),
    ("US", "1 (415) 555-0132", "+14155550132"),
    ("US", "011 44 20 7946 0958", "+442079460958"),
    ("US", "0044 20 7946 0958", "+442079460958"),
    ("US", "+44 20 7946 0958", "+442079460958"),
    ("US", "(415) 555-0132 ext. 12", "+14155550132"),
    ("US", "415-555-0132 x12", "+14155550132"),
    ("US", "415 555 0132 #12", "+14155550132"),
    ("US", "(416) 555-0132", "+14165550132"),
    ("US", "1-800-FLOWERS", "+18003569377"),
    ("us", "  (415) 555-0132  ", "+14155550132"),  # lower-case region, padding
]

INVALID = [  # not a valid number of its region (or not a number at all): not sent
    ("GB", "020 7946 095"),  # a digit short
    ("GB", "+44 20 7946 09588"),  # a digit too many
    ("GB", "12345"),
    ("DE", "030"),
    ("FR", "01 23 45 67"),
    ("FR", "06 39 67 43 23"),  # 0639: no mobile range
    ("JP", "03-1234-567"),
    ("AU", "02 9876 543"),
    ("BR", "(11) 1234"),
    ("IN", "98765 4321"),
    ("US", "(555) 123-4567"),  # 555 is no area code
    ("US", "415-555-013"),
    ("US", "0000000000"),
    ("US", "+999 123 4567"),  # no such calling code
    ("US", "n/a"),
    ("US", "ext. 12"),
]


@pytest.mark.parametrize(("region", "text", "expected"), WRITTEN)
def test_numbers_as_people_write_them_become_e164(region, text, expected):
    assert phones.e164(pl.Series([text]), region).to_list() == [expected]


def test_the_same_answers_through_the_vectorised_parse():
    """All keys of digits through the polars expressions (no size threshold), the rest through
    phonenumbers: the same E.164 as one at a time."""
    for region in sorted({r.upper() for r, _, _ in WRITTEN}):
        rows = [(t, e) for r, t, e in WRITTEN if r.upper() == region]
        keys = pl.DataFrame({"t": [t for t, _ in rows]}).select(phones.canonical(pl.col("t")))
        got = phones.parse_keys(keys.to_series(), region, least=0)
        by_key = dict(zip(got["key"], got["e164"], strict=True))
        assert [by_key[k] for k in keys.to_series()] == [e for _, e in rows], region


@pytest.mark.parametrize(("region", "text"), INVALID)
def test_invalid_numbers_are_flagged_and_not_sent(region, text):
    df = pl.DataFrame({"phone": [text]})
    checked = normalize.phone(pl.col("phone"), region)
    out = df.select(checked.value.alias("value"), checked.problem.alias("problem"))
    assert out.row(0) == (None, "phone_invalid")
    # The same through the two-pass evaluation build_attributes uses.
    out = df.with_columns(checked.value.alias("v")).select(checked.problem_given(pl.col("v")))
    assert out.item() == "phone_invalid"


def test_blank_is_null_and_no_problem():
    df = pl.DataFrame({"phone": [None, "", "   ", "\t"]}, schema={"phone": pl.String})
    checked = normalize.phone(pl.col("phone"), "GB")
    out = df.select(checked.value.alias("v"), checked.problem.alias("p"))
    assert out["v"].to_list() == [None] * 4 and out["p"].to_list() == [None] * 4


def test_numbers_stored_as_integers_are_read_too():
    """A Parquet feed may hold phones as integers (the trunk 0 gone): still national numbers."""
    df = pl.DataFrame({"phone": [2079460958, 4155550132, None]})
    assert phones.e164(df["phone"], "GB").to_list() == ["+442079460958", None, None]
    # 207 is an area code in Maine: a number means what its region says it means.
    assert phones.e164(df["phone"], "US").to_list() == ["+12079460958", "+14155550132", None]


def test_each_distinct_number_is_parsed_once(monkeypatch):
    """50,000 rows, three ways of writing one British number and one German number: two keys
    reach libphonenumber, once each, and every row gets its answer."""
    seen: list[list[str]] = []
    real = phones.parse_keys

    def spy(keys, region, least=phones._VECTORISED_FROM):
        seen.append(sorted(keys.to_list()))
        return real(keys, region, least)

    monkeypatch.setattr(phones, "parse_keys", spy)
    texts = ["020 7946 0958", "(020) 7946-0958", "020.7946.0958", "+49 30 1234567"]
    values = pl.Series([texts[i % 4] for i in range(50_000)])
    out = phones.e164(values, "GB")
    assert seen == [["+49301234567", "02079460958"]]
    assert out.value_counts().sort("count").rows() == [
        ("+49301234567", 12_500),
        ("+442079460958", 37_500),
    ]


def test_each_row_in_its_own_region():
    values = pl.Series(["020 7946 0958", "030 1234567", "01 23 45 67 89", "(415) 555-0132", "x"])
    regions = pl.Series(["GB", "de", "FR", None, "ZZ"])  # lower case, blank, unknown -> default
    got = phones.lookup_by_row(values, regions, "US")["e164"].to_list()
    assert got == ["+442079460958", "+49301234567", "+33123456789", "+14155550132", None]
    df = pl.DataFrame({"p": values, "r": regions})
    expr = phones.e164_expr(pl.col("p"), "US", pl.col("r"))
    assert df.select(expr).to_series().to_list() == got


def test_the_old_uk_mistake_gets_a_hint():
    assert phones.region_problem("GB") is None and phones.region_problem("gb") is None
    assert "GB" in phones.region_problem("UK")
    assert "unknown phone region 'XX'" in phones.region_problem("XX")
    assert phones.region_of_calling_code(44) == "GB" and phones.calling_code("de") == 49


# -- the polars transcription of libphonenumber against libphonenumber itself ----------------------


def _keys(region: str, rng: random.Random, n: int) -> list[str]:
    """Keys of digits around the region's example numbers (mutated, shortened, lengthened), in
    national, +, 00, international-prefix and calling-code-without-+ forms, and random ones."""
    md = PhoneMetadata.metadata_for_region(region)
    cc = str(md.country_code)
    idd = {"US": "011", "JP": "010", "AU": "0011"}.get(region, "00")
    trunk = md.national_prefix or ""
    seeds = [
        d.example_number
        for t in ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "voip",
                  "personal_number", "pager", "uan", "voicemail")
        if (d := getattr(md, t)) is not None and d.example_number
    ]  # fmt: skip
    out: set[str] = set()
    while len(out) < n:
        if seeds and rng.random() < 0.75:
            s = list(rng.choice(seeds))
            for _ in range(rng.randint(0, 3)):
                s[rng.randrange(len(s))] = str(rng.randint(0, 9))
            if rng.random() < 0.2 and len(s) > 3:
                s.pop(rng.randrange(len(s)))
            if rng.random() < 0.2:
                s.insert(rng.randrange(len(s) + 1), str(rng.randint(0, 9)))
            s = "".join(s)
            out.add(rng.choice([s, trunk + s, "+" + cc + s, "00" + cc + s, idd + cc + s, cc + s,
                                "+" + cc + trunk + s]))  # fmt: skip
        else:
            digits = "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(3, 18)))
            out.add(("+" if rng.random() < 0.3 else "") + digits)
    return sorted(out)


def _agree(regions: list[str], per_region: int, seed: int) -> None:
    rng = random.Random(seed)
    for region in regions:
        keys = _keys(region, rng, per_region)
        got = phones.parse_keys(pl.Series(keys), region, least=0)
        fast = {k: (e, p) for k, e, p in got.iter_rows()}
        wrong = [(k, fast[k], phones.parse_key(k, region)) for k in keys]
        wrong = [w for w in wrong if w[1] != w[2]]
        assert not wrong, (region, wrong[:5])


def test_vectorised_parse_agrees_with_libphonenumber():
    # National prefixes that are transformed (AR, BR, MX), shared calling codes (+1, +7, +44,
    # +61, +39), long area codes (DE), leading zeros kept (IT).
    _agree(["US", "CA", "GB", "JE", "DE", "FR", "JP", "AU", "CC", "BR", "IN", "AR", "MX", "IT",
            "VA", "RU", "KZ", "CN"], 150, seed=1)  # fmt: skip


@pytest.mark.slow
def test_vectorised_parse_agrees_with_libphonenumber_in_every_region():
    _agree(sorted(phonenumbers.SUPPORTED_REGIONS), 300, seed=2)


def test_a_column_of_distinct_numbers_keeps_every_answer_in_its_row():
    """A customer table: almost every number distinct, with blanks, nulls, junk and a few repeats
    among them. Parsed where they stand (no distinct pass), each row gets libphonenumber's answer
    for its own text, in its own place."""
    rng = random.Random(5)
    area = ["212", "415", "305", "416", "604", "671", "787", "999", "555"]  # US, CA, GU, PR, none
    texts: list[str | None] = []
    for i in range(6_000):
        n = f"{rng.choice(area)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        texts.append(
            rng.choice(
                [n, "+1" + n, "1-" + n, f"({n[:3]}) {n[3:6]}-{n[6:]}", "+44 20 7946 " + n[:4]]
            )
        )
        if i % 97 == 0:
            texts.append(rng.choice([None, "", "  ", "n/a", "ext. 12", texts[-1]]))
    values = pl.Series(texts, dtype=pl.String)
    assert values.approx_n_unique() >= phones._DISTINCT_SHARE * values.len()  # the case tested
    got = phones.lookup(values, "US")
    # parse_key takes the canonical key (punctuation gone), as lookup does.
    keys = values.to_frame("t").select(phones.canonical(pl.col("t"))).to_series().to_list()
    expected = [(None, None) if not k else phones.parse_key(k, "US") for k in keys]
    assert list(zip(got["e164"], got["parsed"], strict=True)) == expected
    assert sum(e is not None for e, _ in expected) > 3_000  # most are valid numbers
    assert sum(p is not None for _, p in expected) > 500  # and many parse but are not valid
    # The same answers when the values repeat (the distinct pass and the join back).
    twice = phones.lookup(pl.concat([values, values, values]), "US")
    assert twice.head(values.len()).equals(got)


def test_leading_digits_are_matched_on_prefixes_only_when_they_are_short():
    """Regions sharing +1 after the US claim numbers by leading digits of at most four digits, so
    those are matched on distinct four-digit prefixes; a pattern that can match more is not."""
    from amp_braze.braze import phone_expressions as pe

    nanpa = [pe._plan(r) for r in ("AG", "DO", "PR", "JM", "GU")]
    assert pe._widest(tuple(p.leading_digits for p in nanpa)) == 4  # DO's 8001
    assert pe._widest(("8[0-9]+",)) is None and pe._widest(("8(?=1)",)) is None
    numbers = pl.Series(["2681234567", "8091234567", "7871234567", "8761234567", "6711234567",
                         "8001234567", "2121234567"])  # fmt: skip
    assert pe._claimant(numbers, nanpa).to_list() == [0, 1, 2, 3, 4, 1, None]
