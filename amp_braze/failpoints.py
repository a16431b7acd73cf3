"""Named crash points, so tests can kill a sync at an exact moment (as FoundationDB and TiKV do).

Off unless ``AMP_BRAZE_FAILPOINT`` is set, e.g. ``journal.created:3`` (the third time that point
is reached). There the process writes ``<AMP_BRAZE_FAILPOINT_DIR>/<name>`` and waits to be killed.
"""

from __future__ import annotations

import os
import time
from collections import Counter

ENV = "AMP_BRAZE_FAILPOINT"
DIR_ENV = "AMP_BRAZE_FAILPOINT_DIR"
_hits: Counter[str] = Counter()


def failpoint(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, _, nth = spec.partition(":")
    if wanted != name:
        return
    _hits[name] += 1
    if _hits[name] != int(nth or 1):
        return
    folder = os.environ.get(DIR_ENV, ".")
    with open(os.path.join(folder, name), "w") as f:
        f.write(str(os.getpid()))
    while True:  # until the test kills us
        time.sleep(60)
