"""How request bytes reach Braze: a small interface, and the http.client implementation.

``HTTPTransport`` keeps one keep-alive connection per worker thread (http.client costs about two
thirds of urllib3's CPU per request here). A test or another HTTP library plugs in through
``Transport``; the client never looks past it.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlparse

# What a request can fail with before any answer: retried like a 5xx.
NETWORK_ERRORS = (http.client.HTTPException, ConnectionError, TimeoutError, OSError)


class Response:
    """What the client needs of an HTTP answer."""

    __slots__ = ("status", "headers", "data")

    def __init__(self, status: int, headers: Mapping[str, str], data: bytes):
        self.status, self.headers, self.data = status, headers, data


class Transport(Protocol):
    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """One POST; raises one of NETWORK_ERRORS when no answer came."""
        ...

    def close(self) -> None:
        """Release what the calling thread holds."""
        ...


class HTTPTransport:
    def __init__(self, endpoint: str, timeout: float = 30.0):
        u = urlparse(endpoint)
        self._https = u.scheme == "https"
        self._host = u.hostname or ""
        self._port = u.port or (443 if self._https else 80)
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        conn = self._connection()
        try:
            conn.request("POST", path, body=body, headers=dict(headers))
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()  # a broken connection is reopened on the next request
            raise
        if resp.will_close:
            conn.close()
        return Response(resp.status, resp.headers, data)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
