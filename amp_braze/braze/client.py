"""A small, fast /users/track client: pooled keep-alive connections, a shared pacer that keeps under
the rate limit, a shared pause on 429, bounded retries with backoff and jitter for 5xx and network
errors, batch splitting on 400, and per-object results mapped back to the rows they came from.

It knows nothing of Dagster or the pipeline: requests in (``payload.Request``), results out.
The API key is only ever put in the Authorization header; it is never logged or returned.
"""

from __future__ import annotations

import http.client
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

import orjson

from amp_braze.braze.instances import check_endpoint
from amp_braze.braze.payload import Request

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
NETWORK_ERRORS = (http.client.HTTPException, ConnectionError, TimeoutError, OSError)


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


class Pacer:
    """Spaces requests evenly at ``rate`` per second across threads; ``pause`` holds everyone."""

    def __init__(self, rate: float, start_at: float = 0.0):
        self.interval = 1.0 / rate
        self.lock = threading.Lock()
        # start_at (epoch seconds): not before the previous sender's next slot, if later.
        self.next_slot = time.monotonic() + max(0.0, start_at - time.time())
        self.paused = 0.0  # wall-clock seconds everyone was held by pauses, all told

    def pause_until(self, t: float) -> None:
        with self.lock:
            start = max(self.next_slot, time.monotonic())
            self.paused += max(0.0, t - start)
            self.next_slot = max(self.next_slot, t)

    def next_slot_epoch(self) -> float:
        """The next free slot as epoch seconds (monotonic time means nothing to another process)."""
        with self.lock:
            return time.time() + max(0.0, self.next_slot - time.monotonic())

    def acquire(self) -> None:
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait after a 429: X-Ratelimit-Retry-After, else X-RateLimit-Reset (epoch or delta)."""
    for name in ("x-ratelimit-retry-after", "retry-after"):
        v = headers.get(name)
        if v:
            try:
                return max(0.0, float(v))
            except ValueError:
                pass
    v = headers.get("x-ratelimit-reset")
    if v:
        try:
            reset = float(v)
        except ValueError:
            return None
        if reset > 1e9:  # epoch seconds
            return max(0.0, reset - (now if now is not None else time.time()))
        return max(0.0, reset)
    return None


class _Response:
    """What the client needs of an HTTP answer."""

    __slots__ = ("status", "headers", "data")

    def __init__(self, status: int, headers: object, data: bytes):
        self.status, self.headers, self.data = status, headers, data


class BrazeClient:
    def __init__(
        self,
        endpoint: str,
        api_key: str,
        rate_per_second: float = 1000.0,
        concurrency: int = 8,
        timeout: float = 30.0,
        max_retries: int = 6,
        backoff_base: float = 0.25,
        backoff_cap: float = 20.0,
        safety: float = 0.98,
        max_wait_seconds: float = 900.0,
        max_consecutive_failures: int = 20,
        key_env: str = "BRAZE_API_KEY",  # named in messages about the key, never its value
        start_at: float = 0.0,  # epoch seconds: the first request not before (a hand-over)
    ):
        problem = check_endpoint(endpoint)
        if problem:
            raise BrazeError(problem)
        if not api_key:
            raise AuthError(f"no Braze API key: set {key_env} in the environment")
        u = urlparse(endpoint)
        self.endpoint = endpoint.rstrip("/")
        self._host, self._https = u.hostname or "", u.scheme == "https"
        self._port = u.port or (443 if self._https else 80)
        self.timeout = timeout
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.pacer = Pacer(rate_per_second * safety, start_at)
        self.max_wait_seconds = max_wait_seconds
        self.key_env = key_env
        self.max_consecutive_failures = max_consecutive_failures
        self._failures_in_a_row = 0
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.stats = SendStats()
        self._stop = threading.Event()
        self._rng = random.Random()
        self._local = threading.local()

    def __repr__(self) -> str:  # never show the key
        return f"BrazeClient({self.endpoint!r})"

    def next_request_at(self) -> float:
        """When the pacer would allow the next request (epoch seconds), for whoever sends next."""
        return self.pacer.next_slot_epoch()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    # -- one request, with everything that can happen to it -----------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        """Each worker thread keeps one keep-alive connection (http.client costs about two
        thirds of urllib3's CPU per request here)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _post(self, body: bytes, path: str = "/users/track") -> _Response:
        self.pacer.acquire()
        self.stats.add(requests=1)
        conn = self._connection()
        try:
            conn.request("POST", path, body=body, headers=self._headers)
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()  # a broken connection is reopened on the next request
            raise
        if resp.will_close:
            conn.close()
        return _Response(resp.status, resp.headers, data)

    def _failed(self, what: str) -> None:
        """Count a failed request; too many in a row (no answer in between) stops the sync."""
        with self.stats.lock:
            self._failures_in_a_row += 1
            n = self._failures_in_a_row
        if n >= self.max_consecutive_failures:
            self._stop.set()
            raise BrazeUnavailable(
                f"Braze at {self.endpoint}/users/track failed {n} requests in a row (the last: "
                f"{what}); stopping the sync. Everything Braze accepted is recorded; the next "
                "sync sends the rest."
            )

    def _answered(self) -> None:
        if self._failures_in_a_row:
            with self.stats.lock:
                self._failures_in_a_row = 0

    def send_one(self, objects: list[str], ids: list[str]) -> BatchResult:
        body = b'{"attributes":[' + ",".join(objects).encode() + b"]}"
        attempt = limited = 0
        while True:
            if self._stop.is_set():
                return BatchResult(failed=list(ids))
            try:
                resp = self._post(body)
            except NETWORK_ERRORS as e:
                self.stats.add(network_errors=1)
                self._failed(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
                attempt += 1
                if not self._backoff(attempt):
                    return BatchResult(failed=list(ids))
                continue
            status = resp.status
            if status in RETRYABLE_STATUS:
                self._failed(f"HTTP {status} {_message(resp.data)}".strip())
            else:
                self._answered()
            if status in (200, 201):
                return self._result(resp.data, ids)
            if status == 429:
                self.stats.add(rate_limited=1)
                limited += 1
                wait_s = retry_after_seconds(resp.headers)
                if wait_s is None:  # no header: wait longer each time
                    wait_s = min(self.backoff_cap, self.backoff_base * 2 ** min(limited, 8))
                if self.pacer.paused + wait_s > self.max_wait_seconds:
                    self._stop.set()
                    raise BrazeUnavailable(
                        f"Braze at {self.endpoint}/users/track kept answering 429 (rate limited) "
                        f"for more than {self.max_wait_seconds:.0f} s of waiting in this sync "
                        "(braze.max_wait_seconds); stopping. Everything Braze accepted is "
                        "recorded; the next sync sends the rest. Check the workspace's API "
                        "usage dashboard and braze.rate_limit."
                    )
                resume = time.monotonic() + wait_s + self._rng.uniform(0, 0.05)
                self.pacer.pause_until(resume)
                self.stats.add(paused_seconds=wait_s)
                continue
            if status in (401, 403):
                self._stop.set()
                raise AuthError(
                    f"Braze answered {status} {_message(resp.data)} for {self.endpoint}/users/track: check "
                    f"{self.key_env} (it needs the users.track permission and must belong to this "
                    "workspace) and braze.instance / braze.rest_endpoint"
                )
            if status in (400, 413) and len(objects) > 1:
                self.stats.add(split_batches=1)
                half = len(objects) // 2
                left = self.send_one(objects[:half], ids[:half])
                right = self.send_one(objects[half:], ids[half:])
                return BatchResult(
                    left.accepted + right.accepted,
                    left.rejected + right.rejected,
                    left.failed + right.failed,
                )
            if status in (400, 413):
                return BatchResult(rejected=[(ids[0], _reason(resp.data, status))])
            if status in RETRYABLE_STATUS:
                self.stats.add(server_errors=1)
                attempt += 1
                if not self._backoff(attempt):
                    return BatchResult(failed=list(ids))
                continue
            self._stop.set()
            raise BrazeError(
                f"Braze answered {status} {_message(resp.data)} for {self.endpoint}/users/track"
            )

    def _backoff(self, attempt: int) -> bool:
        if attempt > self.max_retries:
            return False
        self.stats.add(retries=1)
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)) * self._rng.uniform(
            0.5, 1.5
        )
        return not self._stop.wait(delay)  # a stopping sync does not sit out its backoff

    def post_identity(self, path: str, body: dict) -> dict:
        """One /users/merge or /users/external_ids/rename request (rare: merges are people, not
        rows), retried on network errors, 5xx and 429 like a track request; raises otherwise."""
        data = orjson.dumps(body)
        attempt = 0
        while True:
            try:
                resp = self._post(data, path)
            except NETWORK_ERRORS as e:
                self._failed(f"{type(e).__name__}: {e}")
                attempt += 1
                if not self._backoff(attempt):
                    raise BrazeUnavailable(f"{self.endpoint}{path}: {type(e).__name__}") from e
                continue
            if resp.status in (200, 201, 202):
                self._answered()
                out = orjson.loads(resp.data) if resp.data else {}
                return out if isinstance(out, dict) else {}
            if resp.status == 429:
                self.stats.add(rate_limited=1)
                wait_s = retry_after_seconds(resp.headers) or self.backoff_base * 2 ** min(
                    attempt, 8
                )
                attempt += 1
                if self.pacer.paused + wait_s > self.max_wait_seconds:
                    raise BrazeUnavailable(f"{self.endpoint}{path} kept answering 429")
                self.pacer.pause_until(time.monotonic() + wait_s)
                self.stats.add(paused_seconds=wait_s)
                continue
            if resp.status in RETRYABLE_STATUS:
                self._failed(f"HTTP {resp.status}")
                attempt += 1
                if self._backoff(attempt):
                    continue
            raise BrazeError(
                f"Braze answered {resp.status} {_message(resp.data)} for {self.endpoint}{path}"
                + (
                    f": check {self.key_env} has the users.merge permission"
                    if resp.status in (401, 403)
                    else ""
                )
            )

    @staticmethod
    def _result(data: bytes, ids: list[str]) -> BatchResult:
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
            if isinstance(err, dict) and err.get("input_array", "attributes") == "attributes":
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
                        done.put(self.send_one(req.objects, req.ids))
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


def _message(data: bytes) -> str:
    try:
        msg = orjson.loads(data).get("message")
        return f"({msg})" if msg else ""
    except (orjson.JSONDecodeError, AttributeError):
        return ""


def _reason(data: bytes, status: int) -> str:
    try:
        out = orjson.loads(data)
        errors = out.get("errors") or []
        if errors and isinstance(errors[0], dict):
            return str(errors[0].get("type"))
        return f"{status}: {out.get('message', '')}"
    except (orjson.JSONDecodeError, AttributeError):
        return f"HTTP {status}"
