"""Parse a client envelope ``{action, event: {event_type, event_payload, socket_id}}`` and say what is wrong.

This is the only place where untrusted client JSON becomes typed data; both transports (HTTP and
WebSocket) go through :func:`parse_envelope`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable  # noqa: UP035 -- protocol/ imports a short list of modules (test_envelope.py)

from pydantic import BaseModel, ValidationError

from .client_events import CLIENT_EVENT_MODELS
from .errors import ProtocolError

MAX_JSON_DEPTH = 32


@dataclass(frozen=True, slots=True)
class ClientEnvelope:
    """A validated client event."""

    event_type: str
    payload: BaseModel
    socket_id: str | None = None
    request_id: str | None = None
    """(ours) Optional correlation id; echoed top-level in the direct WebSocket reply."""

    @property
    def conversation_id(self) -> str | None:
        value = getattr(self.payload, "conversation_id", None)
        return value if isinstance(value, str) else None


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value; stops counting past ``limit``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]} is out of range")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _is_unicode(value: Any) -> bool:
    """False when a string holds a lone surrogate (from a ``\\ud800`` escape): it cannot be stored or sent."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def has_nul(value: Any) -> bool:
    """True when a string anywhere in ``value`` (keys too) holds a NUL character."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def decode_json(raw: str | bytes) -> Any:
    """Decode a JSON document, refusing invalid UTF-8, invalid JSON and excessive nesting.

    NaN, Infinity, out-of-range numbers (1e999) and lone surrogates are refused too: Python's json reads
    them, but they cannot be stored and answered as standard JSON (every later reply would fail).
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
    except UnicodeDecodeError:
        raise ProtocolError(400, "body is not valid UTF-8") from None
    try:
        value = _loads(text)
    except RecursionError:
        raise ProtocolError(400, f"JSON nesting deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise ProtocolError(400, f"invalid JSON: {exc}") from None
    # A value nests at most one level deeper than the brackets in its text (counted in C): walk it only
    # when that bound does not settle it (a chat message never needs the walk).
    if text.count("{") + text.count("[") >= MAX_JSON_DEPTH and _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ProtocolError(400, f"JSON nesting deeper than {MAX_JSON_DEPTH} levels")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and not _is_unicode(value):
        raise ProtocolError(400, "invalid JSON: a \\u escape is a lone surrogate, not Unicode text")
    if "\\u0000" in text and has_nul(value):
        # PostgreSQL text and jsonb cannot hold NUL: refused here, for both stores alike
        raise ProtocolError(400, "invalid JSON: a string holds a NUL character (\\u0000)")
    return value


_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
"""Every ASCII digit to ``0``, every other byte to a space (``bytes.translate``: a C loop, several times
faster than a regular expression's search on a chat message)."""
_LONG_RUN = b"0" * 19


_fast: tuple[Callable[[bytes], Any], type[Exception]] | None = None
"""A faster JSON reader and the error it raises, when the gateway installed one (:func:`use_fast_reader`)."""


def use_fast_reader(loads: Callable[[bytes], Any], error: type[Exception]) -> None:
    """Decode with ``loads`` (the gateway's orjson: not a dependency of the client package) what it reads
    exactly as the standard library does; the rest, and every refusal's message, stay the stdlib's."""
    global _fast  # one reader for the process, installed once by the server package
    _fast = (loads, error)


def _loads(text: str) -> Any:
    """With a fast reader (orjson: several times the stdlib's speed on a chat message), the stdlib's
    reading and its error messages for everything that reader refuses or might read otherwise: orjson
    refuses what the stdlib (with these hooks) refuses too -- invalid JSON, NaN and Infinity, 1e999, lone
    surrogates, very deep nesting -- so a bad document is decoded again by the stdlib, which says why as
    it always did. A run of 19 digits or more (an integer that may be beyond 64 bits, which orjson would
    read as a float) goes to the stdlib at once; a UTF-8 continuation byte is never an ASCII digit."""
    fast = _fast
    if fast is not None:
        data = text.encode("utf-8", "surrogatepass")  # a lone surrogate: invalid UTF-8, refused
        if _LONG_RUN not in data.translate(_DIGITS):
            try:
                return fast[0](data)
            except fast[1]:
                pass
    return json.loads(text, parse_float=_finite, parse_constant=_not_json)


def _describe(exc: ValidationError, prefix: str) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        location = ".".join(str(p) for p in (prefix, *error["loc"]))
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def _optional_str(event: dict[str, Any], key: str) -> str | None:
    value = event.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(400, f"event.{key} must be a string")
    return value


def parse_envelope(raw: str | bytes | dict[str, Any]) -> ClientEnvelope:
    """Validate one client envelope.

    Raises:
        ProtocolError: with ``error_code`` 400 and a description naming the offending field.
    """
    data = raw if isinstance(raw, dict) else decode_json(raw)
    if not isinstance(data, dict):
        raise ProtocolError(400, "envelope must be a JSON object")
    event = data.get("event")
    if not isinstance(event, dict):
        raise ProtocolError(400, "envelope.event must be an object")
    event_type = event.get("event_type")
    if not isinstance(event_type, str):
        raise ProtocolError(400, "event.event_type must be a string")
    model = CLIENT_EVENT_MODELS.get(event_type)
    if model is None:
        raise ProtocolError(400, f"unknown event_type {event_type[:64]!r}")
    payload = event.get("event_payload", {})
    if not isinstance(payload, dict):
        raise ProtocolError(400, "event.event_payload must be an object")
    try:
        parsed = model.model_validate(payload)
    except ValidationError as exc:
        conversation_id = payload.get("conversation_id")
        raise ProtocolError(
            400,
            f"invalid {event_type}: {_describe(exc, 'event_payload')}",
            conversation_id if isinstance(conversation_id, str) else None,
        ) from None
    request_id = data.get("request_id", event.get("request_id"))
    return ClientEnvelope(
        event_type=event_type,
        payload=parsed,
        socket_id=_optional_str(event, "socket_id"),
        request_id=request_id if isinstance(request_id, str) else None,
    )


def encode_envelope(event_type: str, payload: dict[str, Any], socket_id: str | None = None) -> dict[str, Any]:
    """Build a client envelope exactly as the npm client 7.0.0 puts it on the wire."""
    event: dict[str, Any] = {"event_type": event_type, "event_payload": payload}
    if socket_id is not None:
        event["socket_id"] = socket_id
    return {"action": "sendMessage", "event": event}
