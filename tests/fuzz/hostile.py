"""Hypothesis strategies for hostile client input: envelopes that are malformed, mistyped, huge, deep,
full of Unicode edge cases and non-JSON numbers, or valid in shape with hostile values where they count."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

LIMIT = 256 * 1024
"""Largest WebSocket frame and HTTP body, set explicitly on the gateway under test."""

SOCKET = "@@own-socket-id@@"
"""Stands for the fuzzing WebSocket's current ``socket_id`` (it changes when the socket is reopened)."""

EVENT_TYPES = [
    "conversation_start",
    "user_message",
    "metadata",
    "metadata_request",
    "action",
    "edit_message",
    "delete_conversation",
    "delete_user_conversations",
    "get_user_conversations",
    "get_user_conversations_v2",
    "conversation_transcript_request",
    "subscribe",
]
EDGE_TEXTS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202eevil.exe",
    "\u200f\u200e\u061c",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "\U0001f600",
    "e\u0301\u0301\u0301",
    "\r\n\t\x0b\x1b[31m",
    "\\",
    '"',
    "'; DROP TABLE conversations; --",
    "%s%n%x",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "null",
    "NaN",
    "__proto__",
    "constructor",
    "9" * 5000,
]
LONE_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "a\ud83db", "\ude00\ud83d"]
HUGE_NUMBERS: list[Any] = [
    2**70,
    -(2**70),
    -1,
    0,
    2**63,
    2**63 - 1,
    -(2**63) - 1,
    2**53 + 1,
    1e308,
    -1e308,
    5e-324,
    -0.0,
]
NOT_NUMBERS = [float("nan"), float("inf"), float("-inf")]
"""json.dumps writes these as the bare words NaN, Infinity and -Infinity."""
RAW_DOCUMENTS = [
    b"",
    b" ",
    b"null",
    b"[]",
    b"{}",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e308",
    b"1e999",
    b"9" * 5000,
    b"{",
    b'{"event":',
    b"{} {}",
    b'{"event": {}}',
    b'{"event": {"event_type": null}}',
    b'\xef\xbb\xbf{"event": {}}',
    b"\xff\xfe",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b'{"event": {"event_type": "user_message\xed\xa0\x80"}}',
    b'{"event": {"event_type": "get_user_conversations", "event_payload": {"userId": "\\ud800"}}}',
    b'{"event": {"event_type": "get_user_conversations", "event_payload": {"userId": "u", "userId": 1}}}',
    b'{"event": {"event_type": "conversation_start", "event_payload": {"userId": "nan", "metadata": {"a": NaN}}}}',
    b'{"event": {"event_type": "conversation_start", "event_payload": {"userId": "inf", "metadata": {"a": 1e999}}}}',
]


def rarely(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``rare`` one time in ten: a value that makes the whole envelope invalid must not drown the rest."""
    return st.sampled_from(range(10)).flatmap(lambda n: rare if n == 9 else common)


UNICODE = st.characters(exclude_categories=("Cs",))
"""Every code point but the surrogates: the characters ``st.text()``'s default (``codec="utf-8"``) allows, without
hypothesis building its table of that codec by encoding all 1.1 M code points (~2.5 CPU-s in each process while
``.hypothesis/`` is empty, as in a fresh clone)."""

long_texts = st.builds(
    lambda char, count: char * count,
    st.sampled_from(["x", "\u00e9", "\U0001f600", "\u202e", "\x00", "\\"]),
    st.sampled_from([1_000, 20_000, 70_000, LIMIT]),
)
texts = rarely(
    st.text(UNICODE, max_size=30) | st.sampled_from(EDGE_TEXTS), st.sampled_from(LONE_SURROGATES) | long_texts
)
keys = rarely(
    st.text(UNICODE, max_size=12) | st.sampled_from(EDGE_TEXTS[:12] + ["private", "type"]),
    st.sampled_from(LONE_SURROGATES),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    rarely(st.sampled_from(HUGE_NUMBERS), st.sampled_from(NOT_NUMBERS)),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


def valid_payload(event_type: str, conversation_id: str) -> dict[str, Any]:
    """A payload the gateway accepts, before mutation."""
    content = {"type": "text", "text": "hello"}
    return {
        "conversation_start": {"userId": "fuzz-user", "userBasicInfo": {"name": "F"}, "metadata": {"a": 1}},
        "user_message": {"conversation_id": conversation_id, "type": "message_create", "content": content},
        "metadata": {"conversation_id": conversation_id, "metadata": {"a": 2, "private": {"b": 3}}},
        "metadata_request": {"conversation_id": conversation_id},
        "action": {"conversation_id": conversation_id, "type": "normal", "id": "go", "data": {"x": 1}},
        "edit_message": {"conversation_id": conversation_id, "message_id": "m", "content": content},
        "delete_conversation": {"conversation_id": conversation_id, "softdelete": True},
        "delete_user_conversations": {"userId": "fuzz-user-gone", "softdelete": True},
        "get_user_conversations": {"userId": "fuzz-user"},
        "get_user_conversations_v2": {
            "userId": "fuzz-user",
            "filter": {"a": 1},
            "pagination": {"page": 1, "limit": 5},
        },
        "conversation_transcript_request": {"conversation_id": conversation_id},
        "subscribe": {"conversation_id": conversation_id, "after_seq": 0},
    }[event_type]


@st.composite
def mutated_payloads(draw: st.DrawFn, event_type: str, conversation_ids: list[str]) -> dict[str, Any]:
    """A valid payload, changed 0-3 times: a field dropped, replaced by any JSON, added, or (most often) kept
    well-typed but given a hostile value, which is what reaches the handlers and the store."""
    # Mostly a real conversation and few changes, so that most cases reach the handlers, not just the parser.
    real = draw(st.integers(0, 3)) > 0
    payload = valid_payload(event_type, draw(st.sampled_from(conversation_ids) if real else texts))
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        change = draw(st.sampled_from(["drop", "replace", "add", "inject", "inject", "inject"]))
        if change == "add" or not payload:
            payload[draw(keys)] = draw(json_values)
            continue
        key = draw(st.sampled_from(sorted(payload)))
        if change == "drop":
            del payload[key]
        elif change == "replace":
            payload[key] = draw(json_values)
        else:
            payload[key] = inject(draw, payload[key])
    return payload


def inject(draw: st.DrawFn, value: Any) -> Any:
    """The same shape with a hostile leaf: a string becomes a hostile string, an object gains a hostile entry."""
    hostile = st.sampled_from(EDGE_TEXTS + LONE_SURROGATES + HUGE_NUMBERS + NOT_NUMBERS) | long_texts
    if isinstance(value, str):
        return draw(st.sampled_from(EDGE_TEXTS + LONE_SURROGATES) | long_texts)
    if isinstance(value, dict):
        inner = dict(value)
        if inner and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(inner)))
            inner[key] = inject(draw, inner[key])
        else:
            inner[draw(keys)] = draw(hostile)
        return inner
    return draw(hostile)


def deep_document(depth: int, kind: str) -> str:
    """``depth`` levels of nesting, built as text (json.dumps itself would recurse too deep)."""
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


class Body:
    """A case's bytes, with a short repr: hypothesis prints failing cases, and some are 256 KiB."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        if len(self.data) <= 400:
            return f"Body({self.data!r})"
        return f"Body({self.data[:200]!r} ... {self.data[-100:]!r}, {len(self.data)} bytes)"


def envelopes(conversation_ids: list[str]) -> st.SearchStrategy[Body]:
    """One client envelope as the bytes of an HTTP body or a WebSocket frame; mostly hostile."""
    return envelope_bytes(conversation_ids).map(Body)


@st.composite
def envelope_bytes(draw: st.DrawFn, conversation_ids: list[str]) -> bytes:
    """Seven shapes: three of valid-then-mutated payloads, one each of unknown type, broken structure,
    deep nesting and raw documents (non-JSON, non-UTF-8, NaN...)."""
    shape = draw(st.sampled_from(["mutated", "mutated", "mutated", "unknown_type", "broken", "deep", "raw"]))
    if shape == "raw":
        return draw(st.sampled_from(RAW_DOCUMENTS))
    event_type = draw(st.sampled_from(EVENT_TYPES))
    event: dict[str, Any] = {"event_type": event_type, "event_payload": {}}
    envelope: Any = {"action": "sendMessage", "event": event}
    if shape == "mutated":
        event["event_payload"] = draw(mutated_payloads(event_type, conversation_ids))
    elif shape == "unknown_type":
        event["event_type"] = draw(
            texts | st.sampled_from([t.upper() for t in EVENT_TYPES] + ["user_message "])
        )
        event["event_payload"] = draw(json_values)
    elif shape == "broken":
        where = draw(st.sampled_from(["envelope", "event", "event_type", "event_payload", "missing"]))
        if where == "envelope":
            envelope = draw(json_values)
        elif where == "missing":
            del envelope[draw(st.sampled_from(["event", "action"]))]
        else:
            target, field = (envelope, "event") if where == "event" else (event, where)
            target[field] = draw(json_values)
    if isinstance(envelope, dict) and isinstance(envelope.get("event"), dict):
        extra = draw(
            st.sampled_from(["none", "none", "own_socket", "own_socket", "junk_socket", "request_id"])
        )
        if extra == "own_socket":
            envelope["event"]["socket_id"] = SOCKET
        elif extra == "junk_socket":
            envelope["event"]["socket_id"] = draw(json_values)
        elif extra == "request_id":
            envelope["request_id"] = draw(json_values)
    if shape == "deep":
        # The envelope holds the value 3 levels down: 28 makes exactly the gateway's limit of 32, 29 one more.
        depth = draw(st.sampled_from([27, 28, 29, 30, 40, 1_000, 100_000]))
        event["event_payload"] = valid_payload(event_type, draw(st.sampled_from(conversation_ids)))
        event["event_payload"]["metadata"] = "@@deep@@"
        text = json.dumps(envelope).replace(
            '"@@deep@@"', deep_document(depth, draw(st.sampled_from(["list", "dict"])))
        )
        return text.encode()
    ascii_only = draw(st.booleans())
    # ensure_ascii writes a lone surrogate as a \\ud800 escape; without it, as raw (invalid UTF-8) bytes.
    return json.dumps(envelope, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
