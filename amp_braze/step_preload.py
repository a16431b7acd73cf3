"""Imported by the server a run's step processes are forked from (``definitions.step_executor``):
Dagster, amp_braze and the run's definitions are loaded there once instead of in every step.

The server is started by the run's own process, with its environment and working directory, so
the definitions built here are those of the configuration the run loaded.
"""

from amp_braze import definitions

definitions.prebuild()
