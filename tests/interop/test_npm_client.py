"""Interop: the published npm client ``captivate-chat-api@7.0.0``, unchanged, against a real gateway.

The package is installed from the npm registry at test time into ``tests/interop/.npm/`` (ignored by git),
and ``npm_client_check.cjs`` drives it: only its WebSocket constructor and ``fetch`` are redirected from the
Captivate cloud to the gateway. The script runs once per module and prints one JSON object, one field per
client call; each test below checks one call, so a failure names the call that broke.

Without node/npm the tests skip, except under CI (``CI=true``) where they fail.
"""

from __future__ import annotations

import http.client
import json
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from npm_runner import HERE, VERSION, run_script, step

from harness.gateway import GatewayProcess, new_key

pytestmark = pytest.mark.interop

SCRIPT = HERE / "npm_client_check.cjs"
CLOUD_WS = "wss://channel.wss.captivatechat.ai/dev?apiKey="
CLOUD_HTTP = "https://channel.prod.captivat.io/"
GREETING_PREFIX = "Hello! I am the Captivate Chat demo agent"
SCRIPT_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def ids(npm: dict[str, Any]) -> dict[str, str]:
    return npm["ids"]


@pytest.fixture(scope="module")
def npm(gateway: GatewayProcess, tenant_keys: list[str]) -> dict[str, Any]:
    """Run the Node script once against the gateway; its JSON results, one field per client call."""
    env = {
        **os.environ,
        "CCA_PORT": str(gateway.port),
        "CCA_KEY1": tenant_keys[0],
        "CCA_KEY2": tenant_keys[1],
        "CCA_BAD_KEY": new_key(),
        "CCA_USER": "npm-interop-user",
        "CCA_WATCHDOG_MS": "45000",
    }
    return run_script(SCRIPT, env, timeout=SCRIPT_TIMEOUT, context=lambda: f"gateway log:\n{gateway.logs()}")


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


# --- setup: the package, loaded unchanged, and the redirection ----------------------------------------------


def test_package_loaded_and_redirected(npm: dict[str, Any], gateway: GatewayProcess) -> None:
    meta = npm["_meta"]
    assert meta["package_version"] == VERSION
    ws = meta["redirected"]["ws"]
    assert ws, "the client opened no WebSocket"
    for opened in ws:
        assert opened["from"].startswith(CLOUD_WS), opened
        assert opened["to"].startswith(f"{gateway.ws_url}/dev?apiKey="), opened
    fetched = meta["redirected"]["fetch"]
    assert any(f["from"].startswith(CLOUD_HTTP) for f in fetched), "no HTTP call to the client's cloud base"
    for call in fetched:
        assert call["to"].startswith(gateway.http_url + "/"), call
        # The cloud base, or a message_link the gateway itself handed out (the 413 fallback).
        assert call["from"].startswith((CLOUD_HTTP, gateway.http_url + "/")), call
    assert meta["unhandled_rejections"] == [], "the client left promise rejections unhandled"


# --- connection and conversations ---------------------------------------------------------------------------


def test_create_and_connect(npm: dict[str, Any]) -> None:
    connected = step(npm, "connect")
    assert connected["socketActive"] is True
    assert isinstance(connected["socketId"], str) and connected["socketId"]


def test_create_conversation_user_first(npm: dict[str, Any]) -> None:
    created = step(npm, "create_user_first")
    assert isinstance(created["conversationId"], str) and created["conversationId"]


def test_send_message_string(npm: dict[str, Any]) -> None:
    sent = step(npm, "send_message_string")
    assert sent["reply"] == {"content": text("You said: hello"), "from": "ai_agent"}
    ack = sent["resolved"]  # the HTTP body (ours): status, message_id, seq, client_msg_id
    assert ack["status"] == "success"
    assert isinstance(ack["message_id"], str) and ack["message_id"]
    assert isinstance(ack["seq"], int) and ack["seq"] >= 1
    assert ack["client_msg_id"].startswith("unique-message-id-")


def test_send_message_object(npm: dict[str, Any]) -> None:
    sent = step(npm, "send_message_object")
    assert sent["echo"] == {"content": text("You said: buttons"), "from": "ai_agent"}
    assert sent["button"]["from"] == "ai_agent"
    assert sent["button"]["content"]["type"] == "button"
    assert sent["button"]["content"]["buttons"]


def test_metadata_public_and_private(npm: dict[str, Any]) -> None:
    step(npm, "set_metadata")
    step(npm, "set_private_metadata")
    metadata = step(npm, "get_metadata")["metadata"]
    assert metadata["plan"] == "pro"
    assert metadata["topic"] == "alpha-npm"
    assert "private" not in metadata
    dumped = json.dumps(metadata)
    for secret in ("crm_id", "secret", "s1"):
        assert secret not in dumped, f"private metadata leaked to the client by getMetadata: {metadata}"


def test_send_action(npm: dict[str, Any]) -> None:
    reply = step(npm, "send_action")["reply"]
    assert reply == {"content": text("Action received: my_action"), "from": "ai_agent"}


def test_on_action_received(npm: dict[str, Any]) -> None:
    actions = step(npm, "on_action_received")["actions"]
    demo = [a for a in actions if a["id"] == "demo_action"]
    assert len(demo) == 1, actions
    assert isinstance(demo[0]["data"], dict)


def test_on_conversation_update(npm: dict[str, Any], ids: dict[str, str]) -> None:
    update = step(npm, "on_conversation_update")["update"]
    assert update == {"type": "title_changed", "conversationId": ids["A"], "data": {"title": "My title"}}


def test_get_transcript(npm: dict[str, Any]) -> None:
    transcript = step(npm, "get_transcript")["transcript"]
    assert isinstance(transcript, list) and transcript
    for entry in transcript:
        for field in ("message_id", "seq", "from", "content", "created_at"):
            assert field in entry, f"transcript entry without {field}: {entry}"
        assert entry["from"] in ("user", "bot", "human_agent", "system"), entry
        created = datetime.fromisoformat(entry["created_at"])
        assert created.utcoffset() == UTC.utcoffset(None), entry["created_at"]
    seqs = [e["seq"] for e in transcript]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"not oldest first: {seqs}"
    assert len({e["message_id"] for e in transcript}) == len(transcript)
    said = [(e["from"], e["content"]) for e in transcript]
    expected = [
        ("user", text("hello")),
        ("bot", text("You said: hello")),
        ("user", text("buttons")),
        ("bot", text("You said: buttons")),
        ("bot", "button"),
        ("bot", text("Action received: my_action")),
        ("user", text("action")),
        ("bot", text("You said: action")),
        ("user", text("title My title")),
        ("bot", text("You said: title My title")),
    ]

    def kind(content: Any) -> Any:
        return "button" if isinstance(content, dict) and content.get("type") == "button" else content

    simplified = [(who, kind(content)) for who, content in said]
    assert simplified == expected
    user_ids = [e.get("client_msg_id", "") for e in transcript if e["from"] == "user"]
    assert all(i.startswith("unique-message-id-") for i in user_ids), user_ids


def test_edit_message(npm: dict[str, Any]) -> None:
    edited = step(npm, "edit_message")
    entry = edited["entry"]
    assert entry is not None, "the edited message is gone from the transcript"
    assert entry["message_id"] == edited["messageId"]
    assert entry["content"] == text("edited")
    assert entry["from"] == "user"
    assert "edited_at" in entry
    assert edited["length_after"] == edited["length_before"]


def test_create_conversation_bot_first_greets(npm: dict[str, Any]) -> None:
    started = step(npm, "create_bot_first")
    conversation_id = started["conversationId"]
    frame = started["greeting_frame"]  # seen on the client's socket, whatever handler was current
    assert frame["event_payload"]["conversation_id"] == conversation_id
    greeting = frame["event_payload"]["content"]
    assert greeting["type"] == "text" and greeting["text"].startswith(GREETING_PREFIX)
    # onMessage can only be registered after createConversation resolved: when it was in time, it got it.
    if started["greeting_via_onMessage"] is not None:
        assert started["greeting_via_onMessage"] == {"content": greeting, "from": "ai_agent"}
    transcript = started["transcript"]
    assert [(e["from"], e["content"]) for e in transcript] == [("bot", greeting)], (
        "a bot-first transcript is the greeting alone (the empty trigger message is not shown)"
    )


def test_general_error(npm: dict[str, Any]) -> None:
    errors = step(npm, "general_error")
    on_error = errors["onError"]
    assert on_error["conversationId"] == "no-such-conversation"
    assert on_error["errorCode"] == 404
    assert isinstance(on_error["errorDesc"], str) and on_error["errorDesc"]
    assert errors["onMessage"] == {"content": f"[Error: {on_error['errorDesc']}]", "from": "error"}


def test_large_message_via_message_link(npm: dict[str, Any]) -> None:
    big = step(npm, "large_message_413")
    assert big["length"] == 300 * 1024 and big["all_x"] is True
    assert 413 in big["onError_codes"]
    assert not [m for m in big["error_messages"] if "large message" in m], big["error_messages"]


# --- listings -----------------------------------------------------------------------------------------------


def test_get_user_conversations_v1(npm: dict[str, Any], ids: dict[str, str]) -> None:
    listed = step(npm, "list_v1")
    assert sorted(listed["ids"]) == sorted([ids["A"], ids["B"], ids["C"]])
    assert listed["apiKeys"] == ["key1"] * 3
    assert listed["pagination"] is None
    for metadata in listed["metadata"]:
        assert "private" not in metadata and "crm_id" not in json.dumps(metadata), metadata


def test_get_user_conversations_v2_pagination(npm: dict[str, Any], ids: dict[str, str]) -> None:
    first, second = step(npm, "list_v2_page1"), step(npm, "list_v2_page2")
    assert first["pagination"] == {
        "hasNextPage": True,
        "hasPrevPage": False,
        "page": 1,
        "pageSize": 1,
        "total": 2,
        "totalPages": 2,
    }
    assert second["pagination"] == {
        "hasNextPage": False,
        "hasPrevPage": True,
        "page": 2,
        "pageSize": 1,
        "total": 2,
        "totalPages": 2,
    }
    assert len(first["ids"]) == 1 and len(second["ids"]) == 1
    assert sorted(first["ids"] + second["ids"]) == sorted([ids["A"], ids["C"]])  # plan=pro, key1 only


def test_get_user_conversations_v2_filter_and_search(npm: dict[str, Any], ids: dict[str, str]) -> None:
    found = step(npm, "list_v2_search")
    assert found["ids"] == [ids["A"]]
    assert found["pagination"] == {
        "hasNextPage": False,
        "hasPrevPage": False,
        "page": 1,
        "pageSize": 10,
        "total": 1,
        "totalPages": 1,
    }
    assert found["metadata"][0]["topic"] == "alpha-npm"


def test_get_user_conversations_multi_key(npm: dict[str, Any], ids: dict[str, str]) -> None:
    listed = step(npm, "list_multi_key")
    owner = dict(zip(listed["ids"], listed["apiKeys"]))
    assert owner == {ids["A"]: "key1", ids["B"]: "key1", ids["C"]: "key1", ids["D"]: "key2"}
    assert listed["pagination"]["total"] == 4


def test_chat_manager(npm: dict[str, Any], ids: dict[str, str]) -> None:
    managed = step(npm, "manager")
    assert managed["instances"] == [
        {"key": "key1", "present": True, "socketActive": True},
        {"key": "key2", "present": True, "socketActive": True},
    ]
    owner = dict(zip(managed["ids"], managed["apiKeys"]))
    assert owner == {ids["A"]: "key1", ids["B"]: "key1", ids["C"]: "key1", ids["D"]: "key2"}


# --- deletion -----------------------------------------------------------------------------------------------


def test_delete_conversation(npm: dict[str, Any], ids: dict[str, str]) -> None:
    deleted = step(npm, "delete_conversation")
    assert sorted(deleted["listed_ids"]) == sorted([ids["B"], ids["C"]])
    assert deleted["transcript"] is None, "getTranscript of a deleted conversation succeeded"
    assert "404" in deleted["transcript_error"]


def test_delete_user_conversations(npm: dict[str, Any], ids: dict[str, str]) -> None:
    deleted = step(npm, "delete_user_conversations")
    assert deleted["v1_ids"] == []
    # Only key1's conversations went; key2's is another tenant's and stays.
    assert deleted["multi_key_ids"] == [ids["D"]] and deleted["multi_key_apiKeys"] == ["key2"]


# --- authentication -----------------------------------------------------------------------------------------


def test_wrong_api_key_rejected_by_connect(npm: dict[str, Any]) -> None:
    refused = step(npm, "bad_key")
    assert refused["rejected"] is True, "CaptivateChatAPI.create(wrong key) resolved"
    assert "401" in refused["message"]


@pytest.mark.parametrize("query", ["?apiKey=cck_test_not_a_key", ""], ids=["wrong-key", "no-key"])
def test_wrong_api_key_refused_before_upgrade(gateway: GatewayProcess, query: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.request(
            "GET",
            f"/dev{query}",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        )
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status != 101
    assert response.status == 401
