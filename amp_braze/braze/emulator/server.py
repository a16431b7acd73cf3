"""The emulator's HTTP/1.1 server: asyncio (uvloop when installed), keep-alive, Content-Length bodies.

Deliberately small: one event loop, no framework, so that it is never the bottleneck of a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from http import HTTPStatus
from pathlib import Path

import orjson

from amp_braze.braze.emulator.core import Emulator, Settings
from amp_braze.braze.emulator.faults import DROP, Dropped, Response

MAX_HEADER_BYTES = 64 * 1024


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _Protocol(asyncio.Protocol):
    def __init__(self, emulator: Emulator):
        self.emulator = emulator
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        while not self.busy and self.transport is not None and not self.transport.is_closing():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER_BYTES:
                    self._close_with(431)
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            try:
                method, target, version = head[0].split(" ", 2)
            except ValueError:
                self._close_with(400)
                return
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
            answer = self.emulator.handle(method, target, headers, body)
            latency = self.emulator.faults.latency_ms if target.startswith("/users/") else 0
            if latency > 0:
                self.busy = True
                asyncio.get_running_loop().call_later(
                    latency / 1000, self._respond, answer, keep_alive
                )
                return
            self._respond(answer, keep_alive)

    def _respond(self, answer: Response | Dropped, keep_alive: bool) -> None:
        self.busy = False
        t = self.transport
        if t is None or t.is_closing():
            return
        if answer is DROP:  # an injected dropped connection
            t.abort()
            return
        status, extra, payload = answer
        body = orjson.dumps(payload)
        lines = [
            f"HTTP/1.1 {status} {_reason(status)}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: keep-alive" if keep_alive else "Connection: close",
        ]
        lines += [f"{k}: {v}" for k, v in extra.items()]
        t.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if not keep_alive:
            t.close()
        elif self.buf:
            self._next()

    def _close_with(self, status: int) -> None:
        self._respond(status, {}, {"message": _reason(status)}, keep_alive=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is optional
        return asyncio.new_event_loop()


class EmulatorServer:
    """Serve an Emulator on host:port (port 0 = a free port) from a background thread or in the foreground."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: Settings | None = None,
        state_file: str | Path | None = None,
    ):
        self.host, self.port = host, port
        self.emulator = Emulator(settings)
        self.state_file = Path(state_file) if state_file else None
        if self.state_file and self.state_file.exists():
            self.emulator.load(self.state_file.read_bytes())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Future | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        self._server = await loop.create_server(
            lambda: _Protocol(self.emulator), self.host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._stopped
        self._server.close()
        await self._server.wait_closed()

    def serve_forever(self, on_ready=None) -> None:
        """Run in this thread until stop() or KeyboardInterrupt."""
        self._loop = _new_loop()
        if threading.current_thread() is threading.main_thread():
            # SIGTERM and SIGINT stop the server cleanly (and save --state), even mid-request.
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._request_stop)
        if on_ready:
            threading.Thread(
                target=lambda: (self._ready.wait(), on_ready(self)), daemon=True
            ).start()
        try:
            self._loop.run_until_complete(self._serve())
        except KeyboardInterrupt:
            pass
        finally:
            self.save()
            self._loop.close()

    def start(self) -> EmulatorServer:
        """Serve from a daemon thread; returns once the port is bound."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="braze-emulator", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Braze emulator did not start")
        return self

    def _request_stop(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def stop(self) -> None:
        if self._loop and self._stopped and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._request_stop)
        if self._thread:
            self._thread.join(10)

    def save(self) -> None:
        if self.state_file:
            self.state_file.write_bytes(self.emulator.dump())

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
