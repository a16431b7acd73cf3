"""Moved to ``amp_braze.braze.plan_columns`` (the Braze package imports nothing from the pipeline);
these names stay importable from here for code not yet moved over."""

from amp_braze.braze.plan_columns import ADD, FLAG, NEW, REMOVE, WHOLE, AttrSpec, flag

__all__ = ["ADD", "FLAG", "NEW", "REMOVE", "WHOLE", "AttrSpec", "flag"]
