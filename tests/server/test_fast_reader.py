"""The gateway reads client envelopes with orjson (protocol/envelope.py ``use_fast_reader``, installed by
server/handlers.py): every document reads as the standard library reads it, and every refusal says what
it said (the client package, without orjson, keeps the stdlib)."""

from __future__ import annotations

import pytest

import captivate_chat_api.server.handlers  # noqa: F401 -- installs the reader
from captivate_chat_api.protocol import envelope
from captivate_chat_api.protocol.envelope import decode_json
from captivate_chat_api.protocol.errors import ProtocolError

DOCUMENTS = [
    '{"event": {"event_type": "user_message", "event_payload": {"content": {"type": "text", "text": "hi"}}}}',
    '{"n": 12345678901234567890123, "m": -98765432109876543210}',  # beyond 64 bits: exact
    '{"n": 18446744073709551615, "f": 1.5e308, "z": -0.0, "t": 0.1e-400}',
    '{"a": 1, "a": 2}',
    '"caf\\u00e9 \\ud83d\\ude00 é"',
    '"\\ud800"',  # a lone surrogate escape: refused
    '{"x": "\\u0000"}',  # NUL: refused
    "[1e999]",
    "NaN",
    "[Infinity]",
    "{bad",
    '{"a": 1} x',
    "",
    "\ufeff{}",
    "[" * 40 + "]" * 40,
    "[" * 3000 + "]" * 3000,
    '"a\x01b"',
]


def read(text: str) -> tuple[str, object]:
    try:
        return "value", decode_json(text)
    except ProtocolError as exc:
        return "refused", (exc.error_code, exc.error_desc)


@pytest.mark.parametrize("text", DOCUMENTS)
def test_orjson_reads_as_the_stdlib_does(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert envelope._fast is not None, "the server installs its reader"
    fast = read(text)
    monkeypatch.setattr(envelope, "_fast", None)
    slow = read(text)
    assert fast == slow
    assert repr(fast) == repr(slow)  # -0.0 stays -0.0, an int stays an int
