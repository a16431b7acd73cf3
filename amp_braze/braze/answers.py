"""What the body of a Braze answer says, for messages: its ``message``, its first error's type."""

from __future__ import annotations

import orjson


def message(data: bytes) -> str:
    try:
        msg = orjson.loads(data).get("message")
        return f"({msg})" if msg else ""
    except (orjson.JSONDecodeError, AttributeError):
        return ""


def reason(data: bytes, status: int) -> str:
    try:
        out = orjson.loads(data)
        errors = out.get("errors") or []
        if errors and isinstance(errors[0], dict):
            return str(errors[0].get("type"))
        return f"{status}: {out.get('message', '')}"
    except (orjson.JSONDecodeError, AttributeError):
        return f"HTTP {status}"
