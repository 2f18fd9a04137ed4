"""The HTTP side of a real gateway: the client-event POST, transcripts, auth, bad input."""

from __future__ import annotations

import uuid

import httpx
import pytest

from harness.gateway import GatewayProcess
from harness.wire import MESSAGE_PATH, WireClient, envelope, tls


@pytest.fixture
async def client(gateway: GatewayProcess, api_key: str):  # type: ignore[no-untyped-def]
    async with WireClient(gateway.http_url, gateway.ws_url, api_key) as wire:
        yield wire


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def test_healthz(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(verify=tls()) as http:
        response = await http.get(f"{gateway.http_url}/healthz")
    assert response.json() == {"status": "ok"}


async def test_message_is_acknowledged_with_id_and_seq_then_answered(client: WireClient) -> None:
    cid = await client.start(user())
    ack = await client.say(cid, "hello", client_msg_id="c-1")
    assert (
        ack["status"] == "success" and ack["seq"] == 1 and ack["message_id"] and ack["client_msg_id"] == "c-1"
    )
    reply = await client.expect("bot_message")
    assert reply["content"] == {"type": "text", "text": "You said: hello"}
    assert reply["conversation_id"] == cid and reply["seq"] == 2 and reply["message_id"]


async def test_repeated_client_msg_id_is_stored_and_answered_once(client: WireClient) -> None:
    cid = await client.start(user())
    first = await client.say(cid, "once", client_msg_id="same")
    await client.expect("bot_message")
    again = await client.say(cid, "once", client_msg_id="same")
    assert again["message_id"] == first["message_id"] and again["seq"] == first["seq"] and again["duplicate"]
    # the same id with other content is a different message (the npm client's ids can collide)
    other = await client.say(cid, "twice", client_msg_id="same")
    assert other["seq"] > first["seq"]
    await client.expect("bot_message", lambda p: p["content"]["text"] == "You said: twice")
    transcript = (await client.http.get("/api/transcript", params={"conversation_id": cid})).json()[
        "transcript"
    ]
    texts = [e["content"]["text"] for e in transcript]
    assert texts == ["once", "You said: once", "twice", "You said: twice"]


async def test_transcript_entries_are_shaped_and_ordered(client: WireClient) -> None:
    cid = await client.start(user())
    await client.say(cid, "one")
    await client.expect("bot_message")
    response = await client.http.get("/api/transcript", params={"conversation_id": cid})
    transcript = response.json()["transcript"]
    assert [e["from"] for e in transcript] == ["user", "bot"]
    assert [e["seq"] for e in transcript] == [1, 2]
    for entry in transcript:
        assert {"message_id", "seq", "from", "content", "created_at"} <= entry.keys()
        assert entry["created_at"].endswith("Z")


async def test_bot_first_greets_and_the_trigger_is_not_in_the_transcript(client: WireClient) -> None:
    cid = await client.start(user())
    await client.say(cid, "")
    greeting = await client.expect("bot_message")
    assert "demo agent" in greeting["content"]["text"]
    transcript = (await client.http.get("/api/transcript", params={"conversation_id": cid})).json()[
        "transcript"
    ]
    assert [e["from"] for e in transcript] == ["bot"]


async def test_metadata_public_and_private(client: WireClient) -> None:
    cid = await client.start(user(), metadata={"plan": "free", "private": {"crm": 1}})
    await client.ok("metadata", {"conversation_id": cid, "metadata": {"plan": "pro"}})
    await client.ok(
        "metadata", {"conversation_id": cid, "metadata": {"private": {"crm": 2, "token": "s3cret"}}}
    )
    update = await client.expect("conversation_update")
    assert update["type"] == "metadata_changed" and update["data"]["metadata"] == {"plan": "pro"}
    body = await client.ok("metadata_request", {"conversation_id": cid})
    assert body == {"metadata": {"plan": "pro"}}
    assert "s3cret" not in str(body)


async def test_action_reaches_the_agent(client: WireClient) -> None:
    cid = await client.start(user())
    ack = await client.ok(
        "action", {"conversation_id": cid, "type": "normal", "id": "buy", "data": {"sku": 1}}
    )
    assert ack["status"] == "success"
    reply = await client.expect("bot_message")
    assert reply["content"]["text"] == "Action received: buy"


@pytest.mark.parametrize(
    ("text", "event_type", "check"),
    [
        ("buttons", "bot_message", lambda p: p["content"].get("type") == "button"),
        ("cards", "bot_message", lambda p: p["content"].get("type") == "cards"),
        ("action", "action", lambda p: p["actions"][0]["id"] == "demo_action"),
        (
            "title Billing question",
            "conversation_update",
            lambda p: p["type"] == "title_changed" and p["data"]["title"] == "Billing question",
        ),
    ],
)
async def test_demo_agent_keywords(client: WireClient, text: str, event_type: str, check) -> None:  # type: ignore[no-untyped-def]
    cid = await client.start(user())
    await client.say(cid, text)
    await client.expect(event_type, check)


async def test_edit_message(client: WireClient) -> None:
    cid = await client.start(user())
    ack = await client.say(cid, "typo")
    body = await client.ok(
        "edit_message", {"conversation_id": cid, "message_id": ack["message_id"], "content": "fixed"}
    )
    assert body["status"] == "success"
    transcript = (await client.http.get("/api/transcript", params={"conversation_id": cid})).json()[
        "transcript"
    ]
    edited = next(e for e in transcript if e["message_id"] == ack["message_id"])
    assert edited["content"] == {"type": "text", "text": "fixed"} and edited["edited_at"]
    missing = await client.post(
        "edit_message", {"conversation_id": cid, "message_id": "nope", "content": "x"}
    )
    assert missing.status_code == 404


async def test_listing_v1_and_v2_with_pagination(client: WireClient) -> None:
    uid = user()
    ids = [
        await client.start(uid, metadata={"plan": "pro" if i < 3 else "free", "topic": f"t{i}"})
        for i in range(4)
    ]
    v1 = await client.ok("get_user_conversations", {"userId": uid})
    assert sorted(c["conversation_id"] for c in v1["conversations"]) == sorted(ids)
    assert all(c["apiKey"] == client.api_key for c in v1["conversations"])
    v2 = await client.ok(
        "get_user_conversations_v2",
        {"userId": uid, "filter": {"plan": "pro"}, "pagination": {"page": "2", "limit": "2"}},
    )
    assert v2["pagination"] == {
        "hasNextPage": False,
        "hasPrevPage": True,
        "page": 2,
        "pageSize": 2,
        "total": 3,
        "totalPages": 2,
    }
    assert len(v2["conversations"]) == 1
    searched = await client.ok("get_user_conversations_v2", {"userId": uid, "search": {"topic": "T3"}})
    assert [c["conversation_id"] for c in searched["conversations"]] == [ids[3]]


async def test_listing_across_keys_needs_every_key_valid(
    gateway: GatewayProcess, tenant_keys: list[str]
) -> None:
    uid = user()
    async with (
        WireClient(gateway.http_url, gateway.ws_url, tenant_keys[0]) as a,
        WireClient(gateway.http_url, gateway.ws_url, tenant_keys[1]) as b,
    ):
        ca, cb = await a.start(uid), await b.start(uid)
        both = await a.ok("get_user_conversations_v2", {"userId": uid, "apiKeys": tenant_keys})
        assert {(c["conversation_id"], c["apiKey"]) for c in both["conversations"]} == {
            (ca, tenant_keys[0]),
            (cb, tenant_keys[1]),
        }
        assert both["pagination"]["total"] == 2
        only_a = await a.ok("get_user_conversations", {"userId": uid})
        assert [c["conversation_id"] for c in only_a["conversations"]] == [ca]
        bad = await a.post(
            "get_user_conversations_v2", {"userId": uid, "apiKeys": [tenant_keys[1], "cck_guess"]}
        )
        assert bad.status_code == 403 and bad.json()["error_code"] == 403


async def test_delete_conversation_soft_and_hard(client: WireClient) -> None:
    uid = user()
    soft, hard = await client.start(uid), await client.start(uid)
    assert (await client.ok("delete_conversation", {"conversation_id": soft, "softdelete": True}))[
        "status"
    ] == "success"
    assert (await client.ok("delete_conversation", {"conversation_id": hard, "softdelete": False}))[
        "status"
    ] == "success"
    listed = await client.ok("get_user_conversations", {"userId": uid})
    assert listed["conversations"] == []
    for cid in (soft, hard):
        gone = await client.http.get("/api/transcript", params={"conversation_id": cid})
        assert gone.status_code == 404 and gone.json() == {
            "error_code": 404,
            "error_desc": "conversation not found",
        }
        assert (
            await client.post("user_message", {"conversation_id": cid, "content": "hi"})
        ).status_code == 404


async def test_delete_user_conversations(client: WireClient) -> None:
    uid = user()
    for _ in range(3):
        await client.start(uid)
    body = await client.ok("delete_user_conversations", {"userId": uid, "softdelete": True})
    assert body["deleted"] == 3
    assert (await client.ok("get_user_conversations", {"userId": uid}))["conversations"] == []


async def test_other_tenant_cannot_touch_a_conversation(
    gateway: GatewayProcess, tenant_keys: list[str]
) -> None:
    async with (
        WireClient(gateway.http_url, gateway.ws_url, tenant_keys[0]) as owner,
        WireClient(gateway.http_url, gateway.ws_url, tenant_keys[1]) as intruder,
    ):
        cid = await owner.start(user(), metadata={"plan": "secret"})
        probes = [
            ("user_message", {"conversation_id": cid, "content": "hi"}),
            ("metadata", {"conversation_id": cid, "metadata": {"x": 1}}),
            ("metadata_request", {"conversation_id": cid}),
            ("action", {"conversation_id": cid, "id": "x"}),
            ("edit_message", {"conversation_id": cid, "message_id": "m", "content": "x"}),
            ("delete_conversation", {"conversation_id": cid}),
            ("conversation_transcript_request", {"conversation_id": cid}),
            ("subscribe", {"conversation_id": cid, "after_seq": 0}),
        ]
        unknown = str(uuid.uuid4())
        for event_type, payload in probes:
            foreign = await intruder.post(event_type, payload)
            missing = await intruder.post(event_type, {**payload, "conversation_id": unknown})
            assert foreign.status_code == missing.status_code == 404, event_type
            assert foreign.json() == missing.json()
            assert (foreign.json()["error_code"], foreign.json()["error_desc"]) == (
                404,
                "conversation not found",
            )
        assert (
            await intruder.http.get("/api/transcript", params={"conversation_id": cid})
        ).status_code == 404
        assert (await owner.ok("metadata_request", {"conversation_id": cid}))["metadata"] == {
            "plan": "secret"
        }


async def test_foreign_socket_id_is_never_bound(gateway: GatewayProcess, tenant_keys: list[str]) -> None:
    """Naming another tenant's socket in socket_id must not leak events to it."""
    async with (
        WireClient(gateway.http_url, gateway.ws_url, tenant_keys[0]) as victim,
        WireClient(gateway.http_url, gateway.ws_url, tenant_keys[1]) as attacker,
    ):
        attacker_socket = attacker.socket_id
        response = await attacker.http.post(
            MESSAGE_PATH, json=envelope("conversation_start", {"userId": "x"}, victim.socket_id)
        )
        assert response.status_code == 200
        cid = response.json()["conversation_id"]
        await attacker.http.post(
            MESSAGE_PATH,
            json=envelope("user_message", {"conversation_id": cid, "content": "leak?"}, victim.socket_id),
        )
        with pytest.raises(AssertionError):
            await victim.expect("bot_message", timeout=1.0)
        assert attacker_socket != victim.socket_id


@pytest.mark.parametrize(("headers", "status"), [({}, 401), ({"x-api-key": "cck_wrong"}, 401)])
async def test_bad_key_is_refused(gateway: GatewayProcess, headers: dict[str, str], status: int) -> None:
    async with httpx.AsyncClient(verify=tls(), base_url=gateway.http_url) as http:
        response = await http.post(
            MESSAGE_PATH, json=envelope("get_user_conversations", {"userId": "u"}), headers=headers
        )
        transcript = await http.get("/api/transcript", params={"conversation_id": "x"}, headers=headers)
    assert response.status_code == transcript.status_code == status
    assert response.json()["error_code"] == status


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "invalid JSON"),
        (b"\xff\xfe\xfd", 400, "UTF-8"),
        (b'{"event": {"event_type": "teleport", "event_payload": {}}}', 400, "unknown event_type"),
        (
            b'{"event": {"event_type": "user_message", "event_payload": {"conversation_id": 5, "content": "x"}}}',
            400,
            "conversation_id",
        ),
        (
            b'{"event": {"event_type": "subscribe", "event_payload": {"conversation_id": "c"}}}',
            400,
            "socket_id",
        ),
        (b"x" * (256 * 1024 + 1), 413, "larger than"),
    ],
)
async def test_bad_input_gets_a_4xx_json_error(
    client: WireClient, body: bytes, status: int, fragment: str
) -> None:
    response = await client.http.post(
        MESSAGE_PATH, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    error = response.json()
    assert error["error_code"] == status and fragment in error["error_desc"]
    assert set(error) == {"error_code", "error_desc"}


async def test_unknown_route_and_missing_query_are_json_errors(client: WireClient) -> None:
    missing = await client.http.get("/api/transcript")
    assert missing.status_code == 400 and missing.json()["error_code"] == 400
    nowhere = await client.http.get("/api/nowhere")
    assert nowhere.status_code == 404 and nowhere.json()["error_code"] == 404


async def test_large_bot_message_goes_through_message_link(client: WireClient) -> None:
    cid = await client.start(user())
    await client.say(cid, "big")
    error = await client.expect("general_error", lambda p: p.get("error_code") == 413)
    assert error["conversation_id"] == cid and error["message_link"].startswith(client.http_url)
    fetched = await client.http.get(error["message_link"])
    assert fetched.status_code == 200
    assert len(fetched.json()["botMessage"]["content"]["text"]) == 300 * 1024
    async with httpx.AsyncClient(verify=tls()) as anonymous:
        assert (await anonymous.get(error["message_link"])).status_code == 401


async def test_openapi_describes_the_client_event_route(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(verify=tls()) as http:
        schema = (await http.get(f"{gateway.http_url}/openapi.json")).json()
    assert "post" in schema["paths"][MESSAGE_PATH]
    assert "/api/transcript" in schema["paths"]
