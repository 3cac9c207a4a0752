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

import jsonschema

from spec.hypercalls.abi import ABI_VERSION

__all__ = ["ABI_VERSION", "ERROR_CODES", "PROTOCOL_VERSION", "SchemaError", "schema",
           "validate", "word"]

PROTOCOL_VERSION = "1.0"

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

REQUEST_TYPES = ("init", "reset", "hypercall", "event", "probe_access", "probe_dma",
                 "probe_irq", "observe", "shutdown")


class SchemaError(ValueError):
    """A message that does not validate against the protocol schema."""


@cache
def schema(name: str = "protocol") -> dict[str, Any]:
    text = resources.files("conformance.schemas").joinpath(f"{name}.schema.json").read_text()
    return json.loads(text)


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every local ``$ref`` replaced by its target (the protocol schema
    has no recursion), so validation skips the reference machinery: ~10x faster."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(defs[node["$ref"].rsplit("/", 1)[1]], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


MESSAGE_TYPES = (*REQUEST_TYPES, "init_ok", "reset_ok", "hypercall_ok", "event_ok",
                 "probe_access_ok", "probe_dma_ok", "probe_irq_ok", "observe_ok",
                 "shutdown_ok", "error")


@cache
def _validator(msg_type: str) -> jsonschema.Draft202012Validator | None:
    if msg_type not in MESSAGE_TYPES:
        return None
    defs = schema()["$defs"]
    return jsonschema.Draft202012Validator(_inline(defs[msg_type], defs))


_IDS = ("msg_id", "in_reply_to")
_MAX_ID = 2**53 - 1
_valid_bodies: set[str] = set()


def validate(msg: Any) -> None:
    """Raise :class:`SchemaError` unless ``msg`` is a valid protocol message (checked with
    jsonschema against conformance/schemas/protocol.schema.json).

    jsonschema costs about a millisecond a message, so results are memoised by content:
    a message whose body (everything but its ids) already validated is valid iff its ids
    are within the schema's ``msg_id`` bounds.
    """
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise SchemaError("not a JSON object with a string 'type'")
    try:
        key = json.dumps([(k, v) for k, v in msg.items() if k not in _IDS],
                         separators=(",", ":"))
    except (TypeError, ValueError):
        key = None
    required = "msg_id" if msg["type"] in REQUEST_TYPES else "in_reply_to"
    if key is not None and key in _valid_bodies and required in msg and all(
            type(msg[k]) is int and 0 <= msg[k] <= _MAX_ID for k in _IDS if k in msg):
        return
    _validate(msg)
    if key is not None:
        if len(_valid_bodies) > 200_000:
            _valid_bodies.clear()
        _valid_bodies.add(key)


def _validate(msg: dict[str, Any]) -> None:
    v = _validator(msg["type"])
    if v is None:
        raise SchemaError(f"unknown message type {msg['type']!r}")
    if v.is_valid(msg):
        return
    err = jsonschema.exceptions.best_match(v.iter_errors(msg))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "message"
        raise SchemaError(f"{msg['type']}: {where}: {err.message}")


def word(value: Any) -> int:
    """A register value from the wire: an int or a 0x-prefixed hex string."""
    if isinstance(value, str):
        return int(value, 16)
    return int(value)
