"""The real servers' helpers: a free loopback port, and a running Braze emulator as a client
sees it."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatorHandle:
    """A running emulator plus helpers to talk to it as a client would."""

    def __init__(self, server):
        import requests

        self.server = server
        self.url = server.url
        self.key = server.emulator.settings.api_key
        self.http = requests.Session()

    def track(
        self,
        body,
        key: str | None = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
    ):
        import orjson

        data = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {"Authorization": f"Bearer {key or self.key}", "Content-Type": content_type}
        return self.http.post(
            f"{self.url}/users/track", data=data, headers=headers, timeout=timeout
        )

    def export(self, body):
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        return self.http.post(f"{self.url}/users/export/ids", json=body, headers=headers)

    def users(self) -> dict[str, dict]:
        return {
            u.get("external_id") or u["braze_id"]: u
            for u in self.http.get(f"{self.url}/_emulator/users").json()
        }

    def stats(self) -> dict:
        return self.http.get(f"{self.url}/_emulator/stats").json()

    def faults(self, **kw) -> dict:
        return self.http.post(f"{self.url}/_emulator/faults", json=kw).json()

    def configure(self, **kw) -> dict:
        return self.http.post(f"{self.url}/_emulator/config", json=kw).json()


def start_emulator(key: str = "test-key", **settings) -> EmulatorHandle:
    """A Braze emulator on a free loopback port; the caller stops it (``handle.server.stop()``)."""
    from amp_braze.braze.emulator import EmulatorServer, Settings

    return EmulatorHandle(EmulatorServer(settings=Settings(api_key=key, **settings)).start())
