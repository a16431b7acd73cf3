"""A small, fast Braze client: requests in (``payload.Request``), results out.

Shaped like httpx: the bytes go through a ``Transport`` (keep-alive http.client by default), the
waiting is a ``RetryPolicy`` and a shared ``Pacer`` (the rate limit), and this module only decides
what each answer means: 2xx with per-object errors mapped back to rows, 400 split to isolate a bad
row, 401/403 stop, 429 pause everyone, 5xx and network errors retry with backoff.

It knows nothing of Dagster or the pipeline. The API key is only ever put in the Authorization
header; it is never logged or returned.
"""

from __future__ import annotations

import copy
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson

from amp_braze.braze import event_rules as rules
from amp_braze.braze.answers import message as _message
from amp_braze.braze.answers import reason as _reason
from amp_braze.braze.instances import check_endpoint
from amp_braze.braze.payload import Request
from amp_braze.braze.retry import RETRYABLE_STATUS, Pacer, RetryPolicy, retry_after_seconds
from amp_braze.braze.transport import NETWORK_ERRORS, HTTPTransport, Response, Transport

TRACK = "/users/track"


class BrazeError(RuntimeError):
    """Braze refused in a way that retrying will not fix (bad URL, bad content type, ...)."""


class AuthError(BrazeError):
    """401/403: the key is wrong, lacks users.track, or belongs to another instance."""


class BrazeUnavailable(BrazeError):
    """Braze kept failing (connection errors, timeouts, 5xx) or kept rate limiting past the
    bound: the sync stops; what Braze accepted until then is kept."""


@dataclass
class BatchResult:
    accepted: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (__id, Braze's reason)
    failed: list[str] = field(default_factory=list)  # gave up after retries: sent again next sync
    unsent: list[str] = field(default_factory=list)  # never went out (the sync was stopping)


@dataclass
class SendStats:
    requests: int = 0  # HTTP requests made, retries included
    batches: int = 0  # request bodies handed in
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    rate_limited: int = 0  # 429s received
    retries: int = 0  # 5xx / network retries
    split_batches: int = 0
    server_errors: int = 0
    network_errors: int = 0
    paused_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: float) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if k != "lock"}


class BrazeClient:
    def __init__(
        self,
        endpoint: str,
        api_key: str,
        rate_per_second: float = 1000.0,
        concurrency: int = 8,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        safety: float = 0.98,
        key_env: str = "BRAZE_API_KEY",  # named in messages about the key, never its value
        start_at: float = 0.0,  # epoch seconds: the first request not before (a hand-over)
        transport: Transport | None = None,
    ):
        problem = check_endpoint(endpoint)
        if problem:
            raise BrazeError(problem)
        if not api_key:
            raise AuthError(f"no Braze API key: set {key_env} in the environment")
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.pacer = Pacer(rate_per_second * safety, start_at)
        self.transport = transport or HTTPTransport(self.endpoint, timeout)
        self.key_env = key_env
        self._failures_in_a_row = 0
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.stats = SendStats()
        self._stop = threading.Event()
        self._rng = random.Random()

    def __repr__(self) -> str:  # never show the key
        return f"BrazeClient({self.endpoint!r})"

    def next_request_at(self) -> float:
        """When the pacer would allow the next request (epoch seconds), for whoever sends next."""
        return self.pacer.next_slot_epoch()

    def close(self) -> None:
        self.transport.close()

    # -- one exchange: retried until Braze gives an answer retrying will not change --------------
    def _exchange(self, path: str, body: bytes) -> Response | None:
        """The final answer to one request, or None when the retry policy gave up on 5xx and
        network errors (or the sync is stopping). 429s pause every worker and are waited out,
        within ``RetryPolicy.max_wait_seconds``."""
        attempt = limited = 0
        while not self._stop.is_set():
            self.pacer.acquire()
            self.stats.add(requests=1)
            try:
                resp = self.transport.post(path, body, self._headers)
            except NETWORK_ERRORS as e:
                self.stats.add(network_errors=1)
                self._failed(path, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
                if not self.retry.retry_unanswered:  # Braze may have applied it: not again
                    return None
            else:
                if resp.status not in RETRYABLE_STATUS:
                    self._answered()
                    if resp.status != 429:
                        return resp
                    limited += 1
                    self._wait_out_429(path, resp, limited)
                    continue
                self.stats.add(server_errors=1)
                self._failed(path, f"HTTP {resp.status} {_message(resp.data)}".strip())
            attempt += 1
            if not self._backoff(attempt):
                return None
        return None

    def _wait_out_429(self, path: str, resp: Response, times: int) -> None:
        self.stats.add(rate_limited=1)
        wait_s = retry_after_seconds(resp.headers)
        if wait_s is None:  # no header: wait longer each time
            wait_s = self.retry.rate_limited_wait(times)
        if self.pacer.paused + wait_s > self.retry.max_wait_seconds:
            self._stop.set()
            raise BrazeUnavailable(
                f"Braze at {self.endpoint}{path} kept answering 429 (rate limited) "
                f"for more than {self.retry.max_wait_seconds:.0f} s of waiting in this sync "
                "(braze.max_wait_seconds); stopping. Everything Braze accepted is "
                "recorded; the next sync sends the rest. Check the workspace's API "
                "usage dashboard and braze.rate_limit."
            )
        self.pacer.pause_until(time.monotonic() + wait_s + self._rng.uniform(0, 0.05))
        self.stats.add(paused_seconds=wait_s)

    def _failed(self, path: str, what: str) -> None:
        """Count a failed request; too many in a row (no answer in between) stops the sync."""
        with self.stats.lock:
            self._failures_in_a_row += 1
            n = self._failures_in_a_row
        if n >= self.retry.max_consecutive_failures:
            self._stop.set()
            raise BrazeUnavailable(
                f"Braze at {self.endpoint}{path} failed {n} requests in a row (the last: "
                f"{what}); stopping the sync. Everything Braze accepted is recorded; the next "
                "sync sends the rest."
            )

    def _answered(self) -> None:
        if self._failures_in_a_row:
            with self.stats.lock:
                self._failures_in_a_row = 0

    def _backoff(self, attempt: int) -> bool:
        if attempt > self.retry.max_retries:
            return False
        self.stats.add(retries=1)
        # A stopping sync does not sit out its backoff.
        return not self._stop.wait(self.retry.backoff(attempt, self._rng))

    # -- what an answer means ----------------------------------------------------------------------
    def send_one(self, req: Request) -> BatchResult:
        if self._stop.is_set():
            return BatchResult(unsent=list(req.ids))
        resp = self._exchange(TRACK, req.body)
        if resp is None:
            return BatchResult(failed=list(req.ids))
        status = resp.status
        if status in (200, 201):
            return self._result(resp.data, req.ids, req.array)
        if status in (401, 403):
            self._stop.set()
            raise AuthError(
                f"Braze answered {status} {_message(resp.data)} for {self.endpoint}{TRACK}: check "
                f"{self.key_env} (it needs the users.track permission and must belong to this "
                "workspace) and braze.instance / braze.rest_endpoint"
            )
        if status in (400, 413) and len(req.objects) > 1:
            self.stats.add(split_batches=1)
            half = len(req.objects) // 2
            left = self.send_one(Request(req.objects[:half], req.ids[:half], req.array))
            right = self.send_one(Request(req.objects[half:], req.ids[half:], req.array))
            return BatchResult(
                left.accepted + right.accepted,
                left.rejected + right.rejected,
                left.failed + right.failed,
                left.unsent + right.unsent,
            )
        if status in (400, 413):
            return BatchResult(rejected=[(req.ids[0], _reason(resp.data, status))])
        self._stop.set()
        raise BrazeError(
            f"Braze answered {status} {_message(resp.data)} for {self.endpoint}{TRACK}"
        )

    def post_identity(self, path: str, body: dict) -> dict:
        """One /users/merge or /users/external_ids/rename request (rare: merges are people, not
        rows); raises unless Braze took it."""
        resp = self._exchange(path, orjson.dumps(body))
        if resp is None:
            raise BrazeUnavailable(
                f"Braze at {self.endpoint}{path} kept failing; merges are sent again next sync"
            )
        if 200 <= resp.status < 300:
            out = orjson.loads(resp.data) if resp.data else {}
            return out if isinstance(out, dict) else {}
        permission = "users.merge" if path.endswith("merge") else "users.external_ids.rename"
        error = AuthError if resp.status in (401, 403) else BrazeError
        raise error(
            f"Braze answered {resp.status} {_message(resp.data)} for {self.endpoint}{path}"
            + (
                f": check {self.key_env} has the {permission} permission"
                if error is AuthError
                else ""
            )
        )

    @staticmethod
    def _result(data: bytes, ids: list[str], array: str = "attributes") -> BatchResult:
        if b'"errors"' not in data:  # the common case: everything accepted, nothing to parse
            return BatchResult(accepted=ids)
        try:
            out = orjson.loads(data)
        except orjson.JSONDecodeError:
            out = None
        if not isinstance(out, dict):  # errors we cannot read: nothing counts as accepted
            return BatchResult(failed=list(ids))
        bad: dict[int, str] = {}
        for err in out.get("errors") or []:
            if isinstance(err, dict) and err.get("input_array", array) == array:
                idx = err.get("index")
                if not isinstance(idx, int) or not 0 <= idx < len(ids):
                    return BatchResult(failed=list(ids))  # an error we cannot place
                bad[idx] = str(err.get("type", "rejected"))
        return BatchResult(
            accepted=[i for n, i in enumerate(ids) if n not in bad],
            rejected=[(ids[n], reason) for n, reason in sorted(bad.items())],
        )

    # -- many requests ---------------------------------------------------------------------------
    def send(
        self, requests: Iterable[Request], on_result: Callable[[BatchResult], None]
    ) -> SendStats:
        """Send every request with ``concurrency`` worker threads; ``on_result`` runs in the calling
        thread as results arrive (so it may write checkpoints without locks). At most twice the
        concurrency of requests waits in memory."""
        work: queue.Queue = queue.Queue(maxsize=self.concurrency * 2)
        done: queue.Queue = queue.Queue()

        def worker() -> None:
            try:
                while True:
                    req = work.get()
                    if req is None:
                        return
                    try:
                        done.put(self.send_one(req))
                    except BaseException as e:  # AuthError, BrazeError: the caller re-raises
                        self._stop.set()
                        done.put(e)
            finally:
                self.close()

        threads = [
            threading.Thread(target=worker, name=f"braze-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        pending = 0
        errors: list[BaseException] = []
        try:
            for req in requests:
                if errors:
                    on_result(BatchResult(unsent=list(req.ids)))
                    break
                self.stats.add(batches=1)
                while True:
                    pending -= self._deliver(done, on_result, errors, block=False)
                    try:
                        work.put(req, timeout=0.05)
                        pending += 1
                        break
                    except queue.Full:
                        continue
                # Record finished work at once: the less accepted-but-unrecorded work there is,
                # the less a crash makes us send again.
                pending -= self._deliver(done, on_result, errors, block=False)
            while pending:
                pending -= self._deliver(done, on_result, errors, block=True)
        except BaseException:
            self._stop.set()
            raise
        finally:
            # Idle workers take their stop mark at once; after a failure the queued requests
            # return straight away (``_stop`` is set), so the marks get through quickly too.
            for _ in threads:
                work.put(None)
            for t in threads:
                t.join(timeout=self.timeout + 5)
            # Whatever finished before a failure is still handed over, so it is recorded.
            self._deliver(done, on_result, errors, block=False)
        if errors:
            raise errors[0]
        return self.stats

    def _deliver(
        self,
        done: queue.Queue,
        on_result: Callable[[BatchResult], None],
        errors: list[BaseException],
        block: bool,
    ) -> int:
        """Hand finished results to ``on_result``; a worker's exception is kept in ``errors``
        (the first one is raised once everything else is delivered)."""
        n = 0
        while True:
            try:
                item = done.get(timeout=1.0) if block and n == 0 else done.get_nowait()
            except queue.Empty:
                return n
            n += 1
            if isinstance(item, BaseException):
                errors.append(item)
                self._stop.set()
            else:
                self.stats.add(
                    accepted=len(item.accepted),
                    rejected=len(item.rejected),
                    failed=len(item.failed),
                )
                on_result(item)
            if block:
                return n

    def post_subscriptions(self, body: dict, ids: list[str]) -> BatchResult:
        """One /v2/subscription/status/set request for ``ids`` (accepted, rejected on a 400, failed):
        retried as /users/track is, paced apart at the endpoint's own limit (5,000 a minute)."""
        sender = self.__dict__.get("_subscriptions")
        if sender is None:  # this client with a pacer of its own (_exchange uses self.pacer)
            sender = self._subscriptions = copy.copy(self)
            rate = rules.SUBSCRIPTION_RATE_LIMIT / rules.SUBSCRIPTION_RATE_WINDOW_SECONDS
            sender.pacer = Pacer(rate * 0.98)
        resp = sender._exchange(rules.SUBSCRIPTION_SET, orjson.dumps(body))
        if resp is None or 200 <= resp.status < 300:
            return BatchResult(failed=list(ids)) if resp is None else BatchResult(accepted=ids)
        msg = f"Braze answered {resp.status} {_message(resp.data)} for {rules.SUBSCRIPTION_SET}"
        if resp.status == 400:
            return BatchResult(rejected=[(i, msg) for i in ids])
        self._stop.set()
        error = AuthError if resp.status in (401, 403) else BrazeError
        raise error(f"{msg} (it needs subscription.status.set: check {self.key_env})")
