"""Braze's /users/track rules in one place: limits, standard fields, value formats, data points.

Sources, Braze's documentation: /users/track (https://www.braze.com/docs/api/endpoints/user_data/post_user_track), API limits
(https://www.braze.com/docs/api/api_limits), the user attributes object
(https://www.braze.com/docs/api/objects_filters/user_attributes_object), custom attributes and
data points (https://www.braze.com/docs/user_guide/data/data_points). Both the
emulator (which enforces them as Braze does) and the pipeline (which normalises and checks rows
before they are sent) read these definitions.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from functools import cache
from typing import Any

# -- limits: objects, bytes and characters per request (/users/track, API limits) --------------------------------------------------------------
MAX_OBJECTS_PER_REQUEST = 75  # combined across attributes, events and purchases
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_EXTERNAL_ID_BYTES = 987
MAX_STRING_CHARS = 255
DEFAULT_ARRAY_CAP = 25
MAX_NESTED_OBJECT_BYTES = 50 * 1024
MAX_ARRAY_OF_OBJECTS_BYTES = 100 * 1024
MAX_EXPORT_IDS = 50
MAX_IDENTITY_UPDATES = 50  # /users/merge merge_updates, /users/external_ids/rename renames
DEFAULT_RATE_LIMIT = 3000
DEFAULT_RATE_WINDOW_SECONDS = 3.0
EXPORT_RATE_LIMIT = 250
EXPORT_RATE_WINDOW_SECONDS = 60.0

# -- identifiers and control keys (the user attributes object) --------------------------------------------
PRIMARY_IDENTIFIERS = ("external_id", "user_alias", "braze_id")
SECONDARY_IDENTIFIERS = ("email", "phone")
CONTROL_KEYS = frozenset({"_update_existing_only", "_merge_objects", "push_token_import"})

# -- standard profile fields (the user attributes object) -------------------------------------------------------
SUBSCRIPTION_STATES = ("opted_in", "unsubscribed", "subscribed")
GENDERS = ("M", "F", "O", "N", "P")
STANDARD_FIELDS = frozenset(
    {
        "alias_name", "alias_label", "braze_id", "country", "current_location",
        "date_of_first_session", "date_of_last_session", "dob", "email", "email_subscribe",
        "email_open_tracking_disabled", "email_click_tracking_disabled", "external_id", "facebook",
        "first_name", "gender", "home_city", "language", "last_name", "marked_email_as_spam_at",
        "phone", "push_subscribe", "push_tokens", "subscription_groups", "time_zone", "twitter",
    }
)  # fmt: skip
# Fields a sync manages as plain values (the rest are identifiers, device data or structured).
SYNCABLE_STANDARD_FIELDS = (
    "first_name", "last_name", "email", "phone", "dob", "gender", "country", "home_city",
    "language", "time_zone", "email_subscribe", "push_subscribe",
)  # fmt: skip
# Data points (Braze's data points page): subscription states, push tokens and identifiers are free.
NON_BILLABLE_FIELDS = frozenset(
    {
        "external_id", "user_alias", "braze_id", "email_subscribe", "push_subscribe",
        "subscription_groups", "push_tokens", "email_open_tracking_disabled",
        "email_click_tracking_disabled",
    }
) | CONTROL_KEYS  # fmt: skip

# Custom attribute names that shadow a standard field (lower-cased, without _ and -).
SHADOWS: dict[str, str] = {
    **dict.fromkeys(["birthday", "birthdate", "dateofbirth", "dayofbirth", "bday"], "dob"),
    **dict.fromkeys(["emailaddress", "mail", "emailaddr"], "email"),
    **dict.fromkeys(
        ["phonenumber", "mobile", "mobilephone", "cellphone", "telephone", "tel"], "phone"
    ),
    **dict.fromkeys(["firstname", "givenname", "forename"], "first_name"),
    **dict.fromkeys(["lastname", "surname", "familyname"], "last_name"),
    **dict.fromkeys(["sex"], "gender"),
    **dict.fromkeys(["city", "homecity"], "home_city"),
    **dict.fromkeys(["countrycode"], "country"),
    **dict.fromkeys(["timezone", "tz"], "time_zone"),
    **dict.fromkeys(["locale", "lang"], "language"),
    **dict.fromkeys(["emailsubscription", "emailoptin", "emailsubscribed"], "email_subscribe"),
    **dict.fromkeys(["pushsubscription", "pushoptin"], "push_subscribe"),
}


def shadowed_standard_field(name: str) -> str | None:
    """The standard field a custom attribute name duplicates, if any (``birthday`` -> ``dob``)."""
    if name in STANDARD_FIELDS:
        return None
    squashed = re.sub(r"[_\-\s]", "", name).lower()
    return SHADOWS.get(squashed)


# A value set aside by a rule that concerns it alone (an invalid phone number) leaves its row in the
# attributes table with the value null and this flag true: the planner sends nothing for that
# attribute of that user (Braze keeps what it has), where a plain null would unset it.
HELD_PREFIX = "__held_"


def held_column(attribute: str) -> str:
    """The attributes table's flag column for values of ``attribute`` set aside this run."""
    return HELD_PREFIX + attribute


def is_held_column(column: str) -> bool:
    return column.startswith(HELD_PREFIX)


# -- value formats -------------------------------------------------------------------------------
EMAIL_RE = re.compile(
    r"^[^@\s\"'<>(),;:]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}$"
)
E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
DOB_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Custom date formats Braze recognises (the user attributes object: custom attribute dates).
_DATE_PATTERNS = (
    re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.:]\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})?$"),
    re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    re.compile(r"^\d{1,2}/\d{1,2}/\d{4}$"),
    re.compile(r"^\d{1,2}-\d{1,2}-\d{4}$"),
    re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2}\.\d+ \d{4}$"),
)


@cache
def country_codes() -> frozenset[str]:
    import pycountry

    return frozenset(c.alpha_2 for c in pycountry.countries)


@cache
def language_codes() -> frozenset[str]:
    import pycountry

    return frozenset(lang.alpha_2 for lang in pycountry.languages if hasattr(lang, "alpha_2"))


@cache
def time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def country_code(value: str) -> str | None:
    """Braze's best-effort mapping of a country to ISO-3166-1 alpha-2 ("Australia" -> "AU")."""
    v = value.strip()
    if v.upper() in country_codes():
        return v.upper()
    import pycountry

    try:
        return pycountry.countries.lookup(v).alpha_2
    except LookupError:
        return None


def is_email(value: str) -> bool:
    return bool(EMAIL_RE.match(value))


def is_dob(value: str) -> bool:
    if not DOB_RE.match(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def looks_like_date(value: str) -> bool:
    """A custom string attribute Braze would store as a time (ISO 8601 and Braze's own format)."""
    return any(p.match(value) for p in _DATE_PATTERNS)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def attribute_data_points(name: str, value: Any) -> int:
    """Data points one attribute in an applied /users/track object costs (Braze's data points page).

    Standard billable fields and custom attributes cost one each; subscription states, identifiers
    and push tokens are free; a whole array costs one, ``add`` one per added value (``remove`` alone
    one per call); ``inc`` is free; a nested object costs one per key updated, recursively; null
    costs one."""
    if name in NON_BILLABLE_FIELDS:
        return 0
    if isinstance(value, dict):
        if set(value) == {"inc"}:
            return 0
        if set(value) <= {"add", "remove"}:
            added = len(value.get("add") or [])
            return added if added else 1
        if set(value) & {"$add", "$remove", "$update"}:
            return max(1, sum(len(v) for v in value.values() if isinstance(v, list)))
        return max(1, _leaf_keys(value))
    return 1


def _leaf_keys(obj: dict) -> int:
    return sum(
        _leaf_keys(v) if isinstance(v, dict) and v and "$time" not in v else 1 for v in obj.values()
    )
