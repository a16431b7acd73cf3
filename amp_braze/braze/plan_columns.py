"""The plan's columns: the contract between the planner (``amp_braze.sync.plan``), the sync state
and the request encoder (``amp_braze.braze.payload``). It lives with the encoder, so the Braze
package needs nothing from the pipeline.

A plan is wide: per attribute ``a`` its value column ``a`` and a flag ``__c_a`` (send it or not);
segment arrays add ``a__add`` / ``a__remove``; ``__new`` marks a user Braze has not had from
amp_braze and ``__whole`` a row whose arrays go whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from amp_braze.braze import field_rules

FLAG = "__c_"
ADD, REMOVE = "__add", "__remove"
NEW = "__new"  # a user Braze has not had from us
WHOLE = "__whole"  # send array attributes whole, not as add/remove (new users, uncertain values)


def flag(attr: str) -> str:
    return f"{FLAG}{attr}"


@dataclass(frozen=True)
class AttrSpec:
    """How one managed attribute is sent."""

    name: str
    array_ops: bool = (
        False  # a segment array attribute: whole array for new users, add/remove after
    )

    @property
    def billable(self) -> bool:
        return self.name not in field_rules.NON_BILLABLE_FIELDS


# A subscription group's state (``subscribed`` / ``unsubscribed``) is a managed value of the sync
# state and a column of the plan like an attribute, named for its group id. Braze refuses
# attribute names that start with ``$``, so no attribute can take the name; the encoder of
# /users/track never sees these columns (they are not in a plan's ``attrs``).
SUBSCRIPTION = "$subscription_group:"


def subscription_column(group_id: str) -> str:
    return f"{SUBSCRIPTION}{group_id}"


def is_subscription(column: str) -> bool:
    return column.startswith(SUBSCRIPTION)


def group_of(column: str) -> str:
    """The group id of a subscription column."""
    return column[len(SUBSCRIPTION) :]
