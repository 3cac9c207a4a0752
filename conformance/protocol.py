"""The stdio protocol: newline-delimited JSON messages, validated against the JSON Schema.

Every message is one JSON object on one line, modelled on Jepsen Maelstrom's envelope:
``{"type", "msg_id", "in_reply_to", ...body}``.  The suite writes requests to the target's
stdin and reads one reply per request from its stdout; the target logs on stderr.  See
docs/PROTOCOL.md for the message catalogue and conformance/schemas/protocol.schema.json
for the schema every message (in both directions) is validated against.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
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


# --- a compiled fast path -----------------------------------------------------------------
# jsonschema interprets the schema at ~0.5 ms a message, more than everything else a step
# costs over stdio.  So each message type's schema is also compiled, once, to closures
# with three answers: True (valid), False (invalid) or None (cannot tell).  A closure
# answers True or False only where its meaning is exactly jsonschema's (its keyword
# functions and its type checker on the seven JSON types) and None otherwise: for a value
# of any other type, for a keyword or a mix of keywords it does not know (init_ok's
# uniqueItems), for an unresolved $ref.  Only True is trusted; False and None fall back
# to jsonschema, which decides and explains.
Check = Callable[[Any], bool | None]
_JSON_TYPES = (dict, list, str, int, float, bool, type(None))
_ANNOTATIONS = frozenset({"description", "title", "$comment", "examples", "default"})


def _equal(a: Any, b: Any) -> bool | None:
    """jsonschema._utils.equal on scalars of one JSON type; None otherwise."""
    if type(a) is str or type(b) is str:
        return a == b
    if type(a) is type(b) and type(a) in (int, bool, type(None)):
        return a == b
    return None


_LEAF = frozenset({"type", "minimum", "maximum", "pattern", "maxLength", "enum", "const"})
_OBJECT = frozenset({"type", "properties", "required", "additionalProperties",
                     "propertyNames"})
_ARRAY = frozenset({"type", "items", "maxItems"})
_EXACT: dict[str, frozenset[type]] = {  # jsonschema._types on the JSON types, as a set
    "object": frozenset({dict}), "array": frozenset({list}), "string": frozenset({str}),
    "integer": frozenset({int}), "number": frozenset({int, float}),
    "boolean": frozenset({bool}), "null": frozenset({type(None)}),
}


def _leaf(kw: dict[str, Any]) -> Check | None:
    """A scalar schema (type, bounds, pattern, length, enum, const) as one closure."""
    names = kw.get("type")
    names = names if isinstance(names, list) or names is None else [names]
    if names is not None and not all(n in _EXACT for n in names):
        return None
    allowed = frozenset().union(*(_EXACT[n] for n in names)) if names is not None else None
    maybe_float = names is not None and "integer" in names
    lo, hi = kw.get("minimum"), kw.get("maximum")
    if any(b is not None and type(b) not in (int, float) for b in (lo, hi)):
        return None
    rx = re.compile(kw["pattern"]) if "pattern" in kw else None  # jsonschema: re.search
    maxlen = kw.get("maxLength")
    groups = ([[kw["const"]]] if "const" in kw else []) + (  # x must equal one of each
        [list(kw["enum"])] if "enum" in kw else [])

    def check(x: Any) -> bool | None:
        t = type(x)
        if t not in _JSON_TYPES:
            return None
        if allowed is not None and t not in allowed:
            return None if maybe_float and t is float else False
        if t is int or t is float:
            if (lo is not None and x < lo) or (hi is not None and x > hi):
                return False
        elif t is str and ((rx is not None and rx.search(x) is None) or (
                maxlen is not None and len(x) > maxlen)):
            return False
        out: bool | None = True
        for group in groups:
            rs = [_equal(x, e) for e in group]
            if True not in rs:
                if None not in rs:
                    return False
                out = None
        return out
    return check


def _object(kw: dict[str, Any]) -> Check | None:
    """An object schema (properties, required, additionalProperties, propertyNames)."""
    if kw.get("type", "object") != "object":
        return None
    typed = "type" in kw
    props = {k: _compile(v) for k, v in kw.get("properties", {}).items()
             if v is not True}  # a property allowed anything constrains nothing
    required = tuple(kw.get("required", ()))
    extra = _compile(kw["additionalProperties"]) if "additionalProperties" in kw else None
    names = _compile(kw["propertyNames"]) if "propertyNames" in kw else None
    known = frozenset(kw.get("properties", {}))
    per_key = extra is not None or names is not None  # else only the named properties

    def check(x: Any) -> bool | None:
        if type(x) is not dict:
            return (not typed) if type(x) in _JSON_TYPES else None
        for k in required:
            if k not in x:
                return False
        out: bool | None = True
        for k, sub in props.items():
            if k in x:
                r = sub(x[k])
                if r is not True:
                    if r is False:
                        return False
                    out = None
        if per_key:
            for k, v in x.items():
                if type(k) is not str:
                    return None
                if extra is not None and k not in known:
                    r = extra(v)
                    if r is not True:
                        if r is False:
                            return False
                        out = None
                if names is not None:
                    r = names(k)
                    if r is not True:
                        if r is False:
                            return False
                        out = None
        return out
    return check


_INT_STR = frozenset({int, str})


def _array(kw: dict[str, Any]) -> Check | None:
    """An array schema (items, maxItems)."""
    if kw.get("type", "array") != "array":
        return None
    typed = "type" in kw
    items = _compile(kw["items"]) if "items" in kw else None
    most = kw.get("maxItems")

    def check(x: Any) -> bool | None:
        if type(x) is not list:
            return (not typed) if type(x) in _JSON_TYPES else None
        if most is not None and len(x) > most:
            return False
        out: bool | None = True
        if items is not None:
            # each distinct value once (observe_ok's tables repeat a few values); only
            # for ints and strings, which a set never merges (1 and True, 1 and 1.0 it would)
            values = set(x) if len(x) > 4 and {*map(type, x)} <= _INT_STR else x
            for i in values:
                r = items(i)
                if r is not True:
                    if r is False:
                        return False
                    out = None
        return out
    return check


_SCALARS = (int, str, bool, float, type(None))


def _memo(check: Check) -> Check:
    """``check`` remembering its answer per scalar value (a word, a register name recur
    constantly): a dict hit instead of a regex or a oneOf."""
    seen: dict[tuple[type, Any], bool | None] = {}

    def run(x: Any) -> bool | None:
        t = type(x)
        if t not in _SCALARS:
            return check(x)
        key = (t, x)
        r = seen.get(key, seen)
        if r is seen:
            if len(seen) > 50_000:
                seen.clear()
            r = seen[key] = check(x)
        return r  # type: ignore[return-value]
    return run


def _conjunction(parts: list[Check]) -> Check:
    def check(x: Any) -> bool | None:
        out: bool | None = True
        for p in parts:
            r = p(x)
            if r is not True:
                if r is False:
                    return False
                out = None
        return out
    return check


def _one_of(subs: list[Check]) -> Check:
    def check(x: Any) -> bool | None:
        hits, unknown = 0, False
        for s in subs:
            r = s(x)
            if r is None:
                unknown = True
            elif r:
                hits += 1
                if hits == 2:
                    return False  # two certain matches: invalid whatever the rest say
        return None if unknown else hits == 1
    return check


def _any_of(subs: list[Check]) -> Check:
    def check(x: Any) -> bool | None:
        rs = [s(x) for s in subs]
        return True if True in rs else None if None in rs else False
    return check


def _compile(schema: Any) -> Check:
    """A schema as a three-valued check (see above): specialised closures for scalar,
    object and array schemas and the combinators; anything else answers None."""
    if schema is True or schema is False:
        return lambda x: schema
    if not isinstance(schema, dict):
        return lambda x: None
    kw = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
    parts: list[Check] = []
    for key in ("allOf", "oneOf", "anyOf"):
        if key in kw:
            subs = [_compile(v) for v in kw.pop(key)]
            parts.append(_conjunction(subs) if key == "allOf" else _memo(_one_of(subs))
                         if key == "oneOf" else _any_of(subs))
    if kw:
        keys = kw.keys()
        leaf = _leaf(kw) if keys <= _LEAF else None
        part = (_memo(leaf) if leaf is not None and keys & {"pattern", "enum", "const"} else leaf
                if keys <= _LEAF else _object(kw) if keys <= _OBJECT
                else _array(kw) if keys <= _ARRAY else None)
        if part is None:
            return lambda x: None
        parts.insert(0, part)
    if not parts:
        return lambda x: True
    return parts[0] if len(parts) == 1 else _conjunction(parts)


@cache
def _fast(msg_type: str) -> Check | None:
    if msg_type not in MESSAGE_TYPES:
        return None
    defs = schema()["$defs"]
    return _compile(_inline(defs[msg_type], defs))


_IDS = ("msg_id", "in_reply_to")
_MAX_ID = 2**53 - 1
_valid_bodies: set[str] = set()


def validate(msg: Any, body_key: str | None = None) -> None:
    """Raise :class:`SchemaError` unless ``msg`` is a valid protocol message (checked
    against conformance/schemas/protocol.schema.json).

    Results are memoised by content: a message whose body (everything but its ids)
    already validated is valid iff its ids are within the schema's ``msg_id`` bounds.
    ``body_key``, the JSON text of that body, spares computing the key when the caller
    has it (the suite serialises each request's body anyway).  Otherwise the compiled
    check above accepts most messages in microseconds; anything it does not accept goes
    to jsonschema (about a millisecond a message), which decides and explains.
    """
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise SchemaError("not a JSON object with a string 'type'")
    required = "msg_id" if msg["type"] in REQUEST_TYPES else "in_reply_to"
    if body_key is not None and body_key in _valid_bodies and _ids_ok(msg, required):
        return
    fast = _fast(msg["type"])
    if fast is not None and fast(msg) is True:
        if body_key is not None:
            _remember(body_key)
        return
    key = body_key
    if key is None:
        try:
            key = json.dumps([(k, v) for k, v in msg.items() if k not in _IDS],
                             separators=(",", ":"))
        except (TypeError, ValueError):
            key = None
    if key is not None and key in _valid_bodies and _ids_ok(msg, required):
        return
    _validate(msg)
    if key is not None:
        _remember(key)


def _ids_ok(msg: dict[str, Any], required: str) -> bool:
    return required in msg and all(type(msg[k]) is int and 0 <= msg[k] <= _MAX_ID
                                   for k in _IDS if k in msg)


def _remember(key: str) -> None:
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
