"""A lease per destination in storage: one sync at a time sends to a Braze workspace.

Dagster's pools serialize syncs only where the instance configures them; this works with any
instance, and across code locations and machines that share the storage. Generations are files
``lease/g<n>.json`` written create-only, so two runs can never both take generation n+1. The holder
renews its file while it works; a lease whose holder stopped renewing expires after ``ttl``
seconds, and one whose holder process is gone from this same machine is free at once (a SIGKILLed
run does not block the next one).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field

import orjson

from amp_braze.storage import Storage


class LeaseTimeout(RuntimeError):
    """Another sync held the destination for longer than we were willing to wait."""


class LeaseLost(RuntimeError):
    """Our lease expired and another run took the destination (this run stalled too long)."""


def _process_gone(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname() or not holder.get("pid"):
        return False
    pid = int(holder["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that exited but was never reaped (a killed worker's child, adopted by a
    container's first process that reaps nothing) still answers signal 0: it holds nothing."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _free(holder: dict | None, now: float) -> bool:
    if holder is None:
        return True
    return holder.get("released") or holder.get("expires_at", 0) < now or _process_gone(holder)


@dataclass
class Lease:
    storage: Storage
    folder: str  # e.g. sync/<destination>/lease
    owner: str  # a run id, shown to whoever waits
    ttl: float = 60.0
    generation: int = 0
    # When the previous holder would have sent its next request (epoch seconds): a sync that
    # takes over paces from there, so the workspace's rate limit holds across the hand-over.
    next_request_at: float = 0.0
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _name(self, generation: int) -> str:
        return f"{self.folder}/g{generation:09d}.json"

    def _generations(self) -> list[int]:
        names = self.storage.list(self.folder)
        return sorted(int(n.rsplit("/g", 1)[1][:-5]) for n in names if n.endswith(".json"))

    def _body(self, released: bool = False) -> bytes:
        now = time.time()
        return orjson.dumps(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "renewed_at": now,
                "expires_at": 0 if released else now + self.ttl,
                "released": released,
                "next_request_at": self.next_request_at,
            }
        )

    def holder(self) -> tuple[int, dict | None]:
        gens = self._generations()
        if not gens:
            return 0, None
        holder = self.storage.read_json(self._name(gens[-1]))
        return gens[-1], holder

    def acquire(self, wait_seconds: float, poll: float = 0.2) -> float:
        """Take the lease, waiting at most ``wait_seconds``; returns the seconds waited."""
        start = time.monotonic()
        while True:
            generation, holder = self.holder()
            if _free(holder, time.time()):
                self.next_request_at = float((holder or {}).get("next_request_at", 0.0))
                if self.storage.create_bytes(self._name(generation + 1), self._body()):
                    self.generation = generation + 1
                    for g in self._generations():
                        if g < self.generation:
                            self.storage.delete(self._name(g))
                    self._start_heartbeat()
                    return time.monotonic() - start
                continue  # another run took it first: look again
            waited = time.monotonic() - start
            if waited >= wait_seconds:
                raise LeaseTimeout(
                    f"another sync of this Braze destination (run {holder.get('owner')}, on "
                    f"{holder.get('host')}) held {self.storage.uri(self.folder)} for the "
                    f"{wait_seconds:.0f} s this run waits (sync.lease_wait_seconds); it ran "
                    "nothing. If that run is dead, its lease expires within "
                    f"sync.lease_seconds ({self.ttl:.0f} s)."
                )
            time.sleep(min(poll, max(0.01, wait_seconds - waited)))

    def renew(self) -> bool:
        """Extend our lease; False (and ``lost`` set) if another run holds it now."""
        generation, holder = self.holder()
        if generation != self.generation or (holder or {}).get("owner") != self.owner:
            self.lost.set()
            return False
        self.storage.write_bytes(self._name(self.generation), self._body())
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.generation and not self.lost.is_set():
            generation, holder = self.holder()
            if generation == self.generation and (holder or {}).get("owner") == self.owner:
                self.storage.write_bytes(self._name(self.generation), self._body(released=True))

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.ttl / 3):
                try:
                    if not self.renew():
                        return
                except Exception:  # storage hiccup: try again next beat; expiry is the bound
                    continue

        self._thread = threading.Thread(target=beat, name="amp-braze-lease", daemon=True)
        self._thread.start()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
