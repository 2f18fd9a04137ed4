"""The ``/dev`` socket served straight from its transport (``client_socket.ClientSocket``), against a live
gateway: frames sent back to back are served in order, permessage-deflate when it is on, keepalive pings
that close a peer that never answers (1011) and keep one that does."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import websockets

from harness.gateway import GatewayProcess, new_key
from harness.stalled import StalledSocket
from harness.wire import envelope


async def test_frames_sent_back_to_back_are_answered_in_order(tmp_path: Path) -> None:
    key = new_key()
    gateway = GatewayProcess(tmp_path / "gw.db", [key], env={"CAPTIVATE_RATE_PER_SOCKET": "0"}).start()
    try:
        async with websockets.connect(f"{gateway.ws_url}/dev?apiKey={key}") as ws:
            assert "socket_connected" in await asyncio.wait_for(ws.recv(), 5)
            ids = [uuid.uuid4().hex for _ in range(40)]
            # sent back to back: the gateway reads several at once and serves them one at a time
            for request_id in ids:
                await ws.send(
                    json.dumps(envelope("conversation_start", {"userId": "u"}, request_id=request_id))
                )
            answered = []
            while len(answered) < len(ids):
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if (
                    frame.get("request_id") in ids
                    and frame["event"]["event_type"] == "conversation_start_success"
                ):
                    answered.append(frame["request_id"])
            assert answered == ids
    finally:
        gateway.stop()


async def test_permessage_deflate_when_it_is_on(tmp_path: Path) -> None:
    key = new_key()
    env = {"CAPTIVATE_WS_PER_MESSAGE_DEFLATE": "true"}
    gateway = GatewayProcess(tmp_path / "gw.db", [key], env=env).start()
    try:
        async with websockets.connect(f"{gateway.ws_url}/dev?apiKey={key}", compression="deflate") as ws:
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert "socket_connected" in await asyncio.wait_for(ws.recv(), 5)
            await ws.send(json.dumps(envelope("conversation_start", {"userId": "u"}, request_id="r1")))
            text = "x" * 5000
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["event"]["event_type"] == "conversation_start_success":
                    cid = frame["event"]["event_payload"]["conversation_id"]
                    break
            payload = {
                "conversation_id": cid,
                "type": "message_create",
                "content": {"type": "text", "text": text},
            }
            await ws.send(json.dumps(envelope("user_message", payload)))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["event"]["event_type"] == "bot_message":
                    assert text in json.dumps(frame)
                    break
        async with websockets.connect(f"{gateway.ws_url}/dev?apiKey={key}", compression=None) as plain:
            assert "socket_connected" in await asyncio.wait_for(
                plain.recv(), 5
            )  # offered nothing: plain frames
    finally:
        gateway.stop()


async def test_keepalive_closes_a_peer_that_never_answers_a_ping_and_keeps_one_that_does(
    tmp_path: Path,
) -> None:
    key = new_key()
    env = {"CAPTIVATE_WS_PING_INTERVAL": "0.3", "CAPTIVATE_WS_PING_TIMEOUT": "0.5"}
    gateway = GatewayProcess(tmp_path / "gw.db", [key], env=env).start()
    try:
        stalled = StalledSocket(gateway.ws_url, key)  # reads (and so answers pings) only when told to
        await stalled.open(gateway.port)
        async with websockets.connect(f"{gateway.ws_url}/dev?apiKey={key}", ping_interval=None) as alive:
            assert "socket_connected" in await asyncio.wait_for(alive.recv(), 5)
            await asyncio.sleep(2.0)  # several pings: the websockets client answers each at once
            assert alive.close_code is None
            code = await stalled.read_to_the_end()
            assert code == 1011 and stalled.protocol.close_reason == "keepalive ping timeout"
            pong = await alive.ping()
            await asyncio.wait_for(pong, 3)
            assert alive.close_code is None
    finally:
        gateway.stop()
