"""Currents files of our own making, for the demo, the tests and the benchmarks.

The writer schemas follow Braze's Currents event glossary
(https://www.braze.com/docs/user_guide/data/braze_currents/event_glossary/) and its v10 sample
schemas (github.com/Appboy/currents-examples): same record names, field names, types and optionality. Nothing here copies
Braze's sample files.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import uuid
from typing import Any

import fastavro

INTEGRATION = "5f6e7d8c9b0a1f2e3d4c5b6a"


def _opt(name: str, kind: str | dict = "string") -> dict:
    return {"name": name, "type": ["null", kind], "default": None}


def _req(name: str, kind: str | dict = "string") -> dict:
    return {"name": name, "type": kind}


_EMAIL_CORE = [
    _req("id"), _req("user_id"), _opt("dispatch_id"), _opt("external_user_id"), _req("time", "int"),
    _opt("timezone"), _opt("campaign_id"), _opt("campaign_name"), _opt("message_variation_id"),
    _opt("message_variation_name"), _req("email_address"), _opt("canvas_id"), _opt("canvas_name"),
    _opt("canvas_variation_id"), _opt("canvas_variation_name"), _opt("canvas_step_id"),
    _opt("canvas_step_name"), _opt("send_id"),
]  # fmt: skip
_TAIL = [_opt("app_group_id")]
_DEVICE = [_opt("platform"), _opt("os_version"), _opt("device_model"), _opt("device_id")]
_AD = [_opt("ad_id"), _opt("ad_id_type"), _opt("ad_tracking_enabled", "boolean")]

FIELDS: dict[str, list[dict]] = {
    "users.messages.email.Send": _EMAIL_CORE + [_opt("ip_pool"), _opt("message_extras")] + _TAIL + [_opt("from_domain")],
    "users.messages.email.Delivery": _EMAIL_CORE + [_opt("sending_ip"), _opt("ip_pool"), _opt("esp")] + _TAIL + [_opt("from_domain")],
    "users.messages.email.Open": _EMAIL_CORE
    + [_opt("user_agent"), _opt("ip_pool"), _opt("machine_open"), _opt("esp"), _opt("from_domain"),
       _opt("is_amp", "boolean")] + _TAIL
    + [_opt("device_class"), _opt("device_os"), _opt("device_model"), _opt("browser"), _opt("mailbox_provider")],
    "users.messages.email.Click": _EMAIL_CORE
    + [_opt("url"), _opt("user_agent"), _opt("ip_pool"), _opt("link_id"), _opt("link_alias"), _opt("esp"),
       _opt("from_domain"), _opt("is_amp", "boolean"), _opt("is_suspected_bot_click", "boolean"),
       _opt("suspected_bot_click_reason", {"type": "array", "items": "string"})] + _TAIL,
    "users.messages.email.Bounce": _EMAIL_CORE
    + [_opt("sending_ip"), _opt("ip_pool"), _opt("bounce_reason"), _opt("esp"), _opt("from_domain"),
       _opt("is_drop", "boolean")] + _TAIL,
    "users.messages.email.Unsubscribe": _EMAIL_CORE + [_opt("ip_pool")] + _TAIL,
    "users.messages.pushnotification.Open": [
        _req("id"), _req("user_id"), _opt("external_user_id"), _opt("app_id"), _req("time", "int"),
        _opt("timezone"), _opt("campaign_id"), _opt("campaign_name"), _opt("message_variation_id"),
        _opt("canvas_id"), _opt("canvas_step_id"), _opt("send_id"), _opt("dispatch_id"),
    ] + _DEVICE + _TAIL,
    "users.behaviors.Purchase": [
        _req("id"), _req("user_id"), _opt("external_user_id"), _opt("app_id"), _req("time", "int"),
    ] + _DEVICE + [_req("product_id"), _req("price", "float"), _req("currency"), _req("properties")] + _AD + _TAIL,
    "users.behaviors.app.SessionStart": [
        _req("id"), _req("user_id"), _opt("external_user_id"), _req("app_id"), _req("time", "int"),
        _req("session_id"),
    ] + _DEVICE + _TAIL,
    "users.behaviors.CustomEvent": [
        _req("id"), _req("user_id"), _opt("external_user_id"), _opt("app_id"), _req("time", "int"),
        _opt("timezone"),
    ] + _DEVICE + [_req("name"), _req("properties")] + _AD + _TAIL,
}  # fmt: skip


def schema(event_type: str, extra_fields: list[dict] | None = None) -> dict:
    namespace, _, name = f"dataexport.S3.inner.{event_type}".rpartition(".")
    return {
        "type": "record",
        "name": name,
        "namespace": namespace,
        "fields": FIELDS[event_type] + (extra_fields or []),
    }


def avro_bytes(
    event_type: str,
    records: list[dict],
    codec: str = "null",
    extra_fields: list[dict] | None = None,
) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(
        buf, fastavro.parse_schema(schema(event_type, extra_fields)), records, codec=codec
    )
    return buf.getvalue()


def key_for(prefix: str, event_type: str, hour: str, offset: int, layout: str = "new") -> str:
    conn = f"dataexport.prod-01.S3.integration.{INTEGRATION}"
    name = f"{conn}+0+{offset:010d}.avro"
    base = f"{prefix.strip('/')}/{conn}" if prefix.strip("/") else conn
    if layout == "new":
        return f"{base}/event_type={event_type}/date={hour}/version=10/us-01/{name}"
    if layout == "old":
        return f"{base}/event_type={event_type}/date={hour}/41/us-01/{name}"
    if layout == "extra":  # folders Braze might add one day
        return f"{prefix.strip('/')}/region=us/{conn}/kind=s3/event_type={event_type}/batch=7/date={hour}/v=11/x/{name}"
    raise ValueError(layout)


def event(event_type: str, user: str, at: dt.datetime, rng: random.Random, **extra: Any) -> dict:
    """One record with the required fields filled and the usual optional ones."""
    rec: dict[str, Any] = {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "user_id": f"braze-{user}",
        "external_user_id": user,
        "time": int(at.timestamp()),
    }
    if event_type.startswith("users.messages.email."):
        rec |= {
            "email_address": f"{user}@example.com",
            "campaign_id": "c-spring",
            "send_id": "s1",
            "timezone": "UTC",
        }
    elif event_type == "users.behaviors.Purchase":
        rec |= {
            "product_id": "sku-1",
            "price": 19.5,
            "currency": "USD",
            "properties": "{}",
            "platform": "web",
        }
    elif event_type == "users.behaviors.app.SessionStart":
        rec |= {"app_id": "app-1", "session_id": f"sess-{rng.getrandbits(32)}", "platform": "ios"}
    elif event_type == "users.behaviors.CustomEvent":
        rec |= {"name": "viewed_product", "properties": "{}"}
    rec |= extra
    return rec
