"""Client envelopes: every event type parses, and a bad one is refused with the field named."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from captivate_chat_api.protocol import (
    CLIENT_EVENT_MODELS,
    ConversationStart,
    GetUserConversationsV2,
    ProtocolError,
    UserMessage,
    encode_envelope,
    parse_envelope,
)


def env(event_type: str, payload: object, **event: object) -> str:
    return json.dumps(
        {"action": "sendMessage", "event": {"event_type": event_type, "event_payload": payload, **event}}
    )


VALID = {
    "conversation_start": {
        "userId": "u",
        "userBasicInfo": {"name": "J"},
        "metadata": {"a": 1, "private": {"b": 2}},
    },
    "user_message": {
        "conversation_id": "c",
        "type": "message_create",
        "client_msg_id": "m",
        "content": {"type": "text", "text": "hi"},
    },
    "metadata": {"conversation_id": "c", "metadata": {"a": 1}, "client_msg_id": "metadata-1"},
    "metadata_request": {"conversation_id": "c"},
    "action": {"conversation_id": "c", "type": "normal", "id": "go", "data": {"x": 1}},
    "edit_message": {"conversation_id": "c", "type": "message_create", "message_id": "m1", "content": "new"},
    "delete_conversation": {"conversation_id": "c", "softdelete": False},
    "delete_user_conversations": {"userId": "u", "softdelete": True},
    "get_user_conversations": {"userId": "u"},
    "get_user_conversations_v2": {
        "userId": "u",
        "filter": {"a": 1},
        "pagination": {"page": "2", "limit": 10},
    },
    "conversation_transcript_request": {"conversation_id": "c"},
    "subscribe": {"conversation_id": "c", "after_seq": 3},
}


def test_every_client_event_type_is_covered() -> None:
    assert set(VALID) == set(CLIENT_EVENT_MODELS)


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_valid_envelopes_parse(event_type: str) -> None:
    parsed = parse_envelope(env(event_type, VALID[event_type], socket_id="s1"))
    assert parsed.event_type == event_type
    assert parsed.socket_id == "s1"
    assert isinstance(parsed.payload, CLIENT_EVENT_MODELS[event_type])


def test_string_content_becomes_text_message() -> None:
    parsed = parse_envelope(env("user_message", {"conversation_id": "c", "content": "hello"}))
    assert isinstance(parsed.payload, UserMessage)
    assert parsed.payload.content == {"type": "text", "text": "hello"}
    assert parsed.payload.text == "hello"


def test_private_metadata_is_split_from_public() -> None:
    payload = parse_envelope(env("conversation_start", VALID["conversation_start"])).payload
    assert isinstance(payload, ConversationStart)
    assert payload.public_metadata == {"a": 1}
    assert payload.private_metadata == {"b": 2}


def test_pagination_accepts_numeric_strings() -> None:
    payload = parse_envelope(env("get_user_conversations_v2", VALID["get_user_conversations_v2"])).payload
    assert isinstance(payload, GetUserConversationsV2)
    assert (payload.pagination.page, payload.pagination.limit) == (2, 10)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("not json", "invalid JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
        ("[1, 2]", "must be a JSON object"),
        ('{"event": 5}', "envelope.event must be an object"),
        ('{"event": {"event_payload": {}}}', "event_type must be a string"),
        (env("launch_rockets", {}), "unknown event_type 'launch_rockets'"),
        (env("user_message", []), "event_payload must be an object"),
        (env("user_message", {"content": "x"}), "event_payload.conversation_id"),
        (env("conversation_start", {"userId": 7}), "event_payload.userId"),
        (
            env("delete_conversation", {"conversation_id": "c", "softdelete": "yes"}),
            "event_payload.softdelete",
        ),
        (env("subscribe", {"conversation_id": "c", "after_seq": -1}), "event_payload.after_seq"),
        (
            env("get_user_conversations_v2", {"userId": "u", "pagination": {"limit": "many"}}),
            "pagination.limit",
        ),
        (env("user_message", {"conversation_id": "c", "content": 5}), "event_payload.content"),
        (env("metadata_request", {"conversation_id": "c"}, socket_id=5), "socket_id must be a string"),
        (
            '{"event": {"event_type": "metadata_request", "event_payload": ' + "[" * 40 + "]" * 40 + "}}",
            "nesting",
        ),
    ],
)
def test_bad_envelopes_say_what_is_wrong(raw: str | bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_envelope(raw)
    assert caught.value.error_code == 400
    assert fragment in caught.value.error_desc


def test_error_keeps_the_conversation_id_when_it_has_one() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_envelope(env("action", {"conversation_id": "c9", "id": 5}))
    assert caught.value.conversation_id == "c9"


def test_encode_envelope_matches_the_npm_client_shape() -> None:
    assert encode_envelope("metadata_request", {"conversation_id": "c"}, "s") == {
        "action": "sendMessage",
        "event": {
            "event_type": "metadata_request",
            "event_payload": {"conversation_id": "c"},
            "socket_id": "s",
        },
    }


UNICODE = st.characters(
    exclude_categories=("Cs",)
)  # what st.text()'s codec="utf-8" allows, without its table
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(UNICODE, max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(UNICODE, max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(event_type=st.sampled_from(sorted(VALID) + ["x"]), payload=json_values)
def test_arbitrary_payloads_parse_or_raise_protocol_error(event_type: str, payload: object) -> None:
    try:
        parse_envelope(env(event_type, payload))
    except ProtocolError as exc:
        assert exc.error_code == 400 and exc.error_desc


def test_protocol_package_does_no_io() -> None:
    """protocol/ imports only the standard library's pure modules, pydantic, and itself."""
    import ast
    from pathlib import Path

    from captivate_chat_api import protocol

    allowed = {"__future__", "json", "math", "re", "typing", "dataclasses", "pydantic", "errors"}
    for path in Path(protocol.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level == 1 else [(node.module or "").split(".")[0]]
            else:
                continue
            assert set(names) <= allowed, f"{path.name} imports {names}"
