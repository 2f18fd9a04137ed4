"""The WebSocket side: 1.x clients sending every envelope over the socket, binding, replay, limits."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import websockets

from harness.gateway import GatewayProcess
from harness.wire import WireClient


@pytest.fixture
async def client(gateway: GatewayProcess, api_key: str):  # type: ignore[no-untyped-def]
    async with WireClient(gateway.http_url, gateway.ws_url, api_key) as wire:
        yield wire


async def ws_start(client: WireClient, user: str = "ws-user", **payload: object) -> str:
    await client.send_ws("conversation_start", {"userId": user, **payload})
    started = await client.expect("conversation_start_success")
    return str(started["conversation_id"])


async def test_a_1x_client_gets_legacy_replies(client: WireClient) -> None:
    user = f"legacy-{uuid.uuid4().hex[:6]}"
    cid = await ws_start(client, user, metadata={"plan": "free", "private": {"x": 1}})
    await client.send_ws(
        "user_message",
        {
            "conversation_id": cid,
            "type": "message_create",
            "client_msg_id": "w1",
            "content": {"type": "text", "text": "hi"},
        },
    )
    echo = await client.expect("user_message")
    assert echo["client_msg_id"] == "w1" and echo["seq"] == 1
    assert (await client.expect("bot_message"))["content"]["text"] == "You said: hi"

    await client.send_ws("metadata", {"conversation_id": cid, "metadata": {"plan": "pro"}})
    assert (await client.expect("metadata_update_success"))["conversation_id"] == cid
    await client.send_ws("metadata_request", {"conversation_id": cid})
    assert (await client.expect("conversation_metadata"))["content"] == {"plan": "pro"}

    await client.send_ws("get_user_conversations", {"userId": user})
    listed = await client.expect("user_conversations")
    assert [c["conversation_id"] for c in listed["conversations"]] == [cid]

    await client.send_ws("conversation_transcript_request", {"conversation_id": cid})
    transcript = (await client.expect("conversation_transcript"))["transcript"]
    assert [e["from"] for e in transcript] == ["user", "bot"]

    await client.send_ws("delete_conversation", {"conversation_id": cid, "softdelete": True})
    assert (await client.expect("delete_conversation_success"))["conversation_id"] == cid


async def test_bad_frames_get_general_error_and_the_socket_stays_open(client: WireClient) -> None:
    cid = await ws_start(client)
    for frame in [
        "not json",
        "[]",
        json.dumps({"event": {"event_type": "warp", "event_payload": {}}}),
        json.dumps({"event": {"event_type": "user_message", "event_payload": {"conversation_id": cid}}}),
    ]:
        await client.ws.send(frame)
        error = await client.expect("general_error")
        assert error["error_code"] == 400 and error["error_desc"]
    await client.ws.send(b"\xff\xfe binary garbage")
    assert (await client.expect("general_error"))["error_code"] == 400
    await client.send_ws("user_message", {"conversation_id": str(uuid.uuid4()), "content": "x"})
    assert (await client.expect("general_error"))["error_code"] == 404
    await client.send_ws("user_message", {"conversation_id": cid, "content": "still here"})
    assert (await client.expect("bot_message"))["content"]["text"] == "You said: still here"


async def test_request_id_is_echoed_on_direct_replies(client: WireClient) -> None:
    cid = await ws_start(client)
    await client.ws.send(
        json.dumps(
            {
                "action": "sendMessage",
                "request_id": "r-42",
                "event": {"event_type": "metadata_request", "event_payload": {"conversation_id": cid}},
            }
        )
    )
    while True:
        frame = await client.recv()
        if frame["event"]["event_type"] == "conversation_metadata":
            assert frame["request_id"] == "r-42"
            break


async def test_oversize_frame_closes_with_1009(gateway: GatewayProcess, api_key: str) -> None:
    async with websockets.connect(f"{gateway.ws_url}/dev?apiKey={api_key}", max_size=None) as ws:
        await ws.recv()
        await ws.send("x" * (256 * 1024 + 10))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_wrong_key_is_refused_before_the_upgrade(gateway: GatewayProcess) -> None:
    for url in (f"{gateway.ws_url}/dev?apiKey=cck_wrong", f"{gateway.ws_url}/dev"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url)
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body)["error_code"] == 401


async def test_two_tabs_bound_to_one_conversation_both_get_events(
    gateway: GatewayProcess, api_key: str
) -> None:
    async with (
        WireClient(gateway.http_url, gateway.ws_url, api_key) as tab1,
        WireClient(gateway.http_url, gateway.ws_url, api_key) as tab2,
    ):
        cid = await tab1.start("tabs")
        # tab2 binds by naming its socket in any client event of the conversation
        await tab2.ok("metadata_request", {"conversation_id": cid})
        await tab1.say(cid, "to both")
        for tab in (tab1, tab2):
            assert (await tab.expect("user_message"))["content"]["text"] == "to both"
            assert (await tab.expect("bot_message"))["content"]["text"] == "You said: to both"


async def test_conversations_on_one_socket_are_told_apart(client: WireClient) -> None:
    first, second = await client.start("multi"), await client.start("multi")
    await client.say(first, "one")
    await client.say(second, "two")
    replies = {}
    while len(replies) < 2:
        payload = await client.expect("bot_message")
        replies[payload["conversation_id"]] = payload["content"]["text"]
    assert replies == {first: "You said: one", second: "You said: two"}


async def test_subscribe_replays_what_a_socket_missed(gateway: GatewayProcess, api_key: str) -> None:
    async with WireClient(gateway.http_url, gateway.ws_url, api_key) as first:
        cid = await first.start("resume")
        await first.say(cid, "before")
        seen = await first.expect("bot_message")
    last_seen = seen["seq"]
    async with WireClient(gateway.http_url, gateway.ws_url, api_key) as other:
        await other.ok("metadata_request", {"conversation_id": cid})
        for text in ("while away 1", "while away 2"):
            await other.say(cid, text)
            await other.expect("bot_message", lambda p, t=text: p["content"]["text"] == f"You said: {t}")
    async with WireClient(gateway.http_url, gateway.ws_url, api_key) as back:
        await back.send_ws("subscribe", {"conversation_id": cid, "after_seq": last_seen})
        replayed = []
        while True:
            frame = (await back.recv())["event"]
            if frame["event_type"] == "subscribe_success":
                assert frame["event_payload"]["recovered"] is True
                assert frame["event_payload"]["last_seq"] == last_seen + 4
                break
            replayed.append(frame["event_payload"]["seq"])
        assert replayed == list(range(last_seen + 1, last_seen + 5))
        await back.say(cid, "live again")
        live = await back.expect("bot_message")
        assert live["seq"] == last_seen + 6


async def test_subscribe_over_http_with_socket_id(client: WireClient) -> None:
    cid = await client.start("http-resume")
    await client.say(cid, "a")
    await client.expect("bot_message")
    body = await client.ok("subscribe", {"conversation_id": cid, "after_seq": 0})
    assert body == {"conversation_id": cid, "last_seq": 2, "recovered": True}
    assert [(await client.expect(t))["seq"] for t in ("user_message", "bot_message")] == [1, 2]
    ahead = await client.ok("subscribe", {"conversation_id": cid, "after_seq": 99})
    assert ahead["recovered"] is False and ahead["reason"]


async def test_deleting_tells_bound_sockets(gateway: GatewayProcess, api_key: str) -> None:
    async with (
        WireClient(gateway.http_url, gateway.ws_url, api_key) as tab1,
        WireClient(gateway.http_url, gateway.ws_url, api_key) as tab2,
    ):
        cid = await tab1.start("deleter")
        await tab2.ok("metadata_request", {"conversation_id": cid})
        await tab1.ok("delete_conversation", {"conversation_id": cid, "softdelete": True})
        update = await tab2.expect("conversation_update")
        assert update == {"type": "deleted", "conversation_id": cid, "data": {"soft": True}}
