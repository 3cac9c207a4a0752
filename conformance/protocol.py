"""The stdio protocol: newline-delimited JSON messages, validated against the JSON Schema.

Every message is one JSON object on one line, modelled on Jepsen Maelstrom's envelope:
``{"type", "msg_id", "in_reply_to", ...body}``.  The suite writes requests to the target's
stdin and reads one reply per request from its stdout; the target logs on stderr.  See
docs/PROTOCOL.md for the message catalogue and conformance/schemas/protocol.schema.json
for the schema every message (in both directions) is validated against.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs

from spec.hypercalls.abi import ABI_VERSION

__all__ = ["ABI_VERSION", "ERROR_CODES", "PROTOCOL_VERSION", "SchemaError", "schema",
           "validate", "word"]

PROTOCOL_VERSION = "1.1"  # 1.1: init_ok may declare a profile (1.0 adapters still work)

_DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# Error codes a target may return (Maelstrom's numbering where one exists).
ERROR_CODES: dict[str, int] = {
    "timeout": 0,
    "not_supported": 10,
    "temporarily_unavailable": 11,
    "malformed_request": 12,
    "crash": 13,
    "abort": 14,
    "invalid_config": 30,
    "unknown_event": 31,
}

REQUEST_TYPES = ("init", "reset", "hypercall", "abi_call", "event", "probe_access",
                 "probe_dma", "probe_irq", "observe", "shutdown")


class SchemaError(ValueError):
    """A message that does not validate against the protocol schema."""


@cache
def schema(name: str = "protocol") -> dict[str, Any]:
    text = resources.files("conformance.schemas").joinpath(f"{name}.schema.json").read_text()
    return json.loads(text)


MESSAGE_TYPES = (*REQUEST_TYPES, "init_ok", "reset_ok", "hypercall_ok", "abi_call_ok",
                 "event_ok", "probe_access_ok", "probe_dma_ok", "probe_irq_ok", "observe_ok",
                 "shutdown_ok", "error")


def _rooted(msg_type: str) -> dict[str, Any]:
    """The protocol schema with its root replaced by a reference to ``msg_type``'s
    ``$defs`` entry: what a message of that type must satisfy.  A message matches the
    top-level ``oneOf`` iff it matches the entry of its own ``type`` (each entry pins
    ``type`` with a ``const``), and checking just that one gives a precise error."""
    s = schema()
    return {"$schema": s["$schema"], "$id": s["$id"], "$defs": s["$defs"],
            "$ref": f"#/$defs/{msg_type}"}


@cache
def _validators() -> dict[str, jsonschema_rs.Validator]:
    """The compiled (Rust) draft 2020-12 validator of each message type, built once."""
    if schema().get("$schema") != _DRAFT_2020_12:
        raise RuntimeError("protocol.schema.json must declare JSON Schema draft 2020-12")
    return {t: jsonschema_rs.Draft202012Validator(_rooted(t)) for t in MESSAGE_TYPES}


def validate(msg: Any, body_key: str | None = None) -> None:
    """Raise :class:`SchemaError` unless ``msg`` is a valid protocol message (checked
    against conformance/schemas/protocol.schema.json by jsonschema-rs, in a few
    microseconds).

    The message is checked as JSON carries it: a tuple counts as an array, and a value
    JSON has no form for (a set, a non-string key) is an error.  ``body_key`` (the JSON
    text of the message without its ids) is accepted for compatibility; validation no
    longer needs it.
    """
    del body_key
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise SchemaError("not a JSON object with a string 'type'")
    msg_type = msg["type"]
    validator = _validators().get(msg_type)
    if validator is None:
        raise SchemaError(f"unknown message type {msg_type!r}")
    try:
        if validator.is_valid(msg):
            return
        err = next(iter(validator.iter_errors(msg)))
    except ValueError as exc:  # jsonschema-rs reads only JSON data
        raise SchemaError(f"{msg_type}: not JSON data: {exc}") from None
    where = "/".join(str(p) for p in err.instance_path) or "message"
    raise SchemaError(f"{msg_type}: {where}: {err.message}")


def word(value: Any) -> int:
    """A register value from the wire: an int or a 0x-prefixed hex string."""
    if isinstance(value, str):
        return int(value, 16)
    return int(value)
