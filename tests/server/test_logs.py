"""No API key ever reaches a log line, even though the WebSocket URL carries it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import websockets

from captivate_chat_api.server.logs import redact
from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient


def test_redact_covers_query_strings_headers_and_key_shapes() -> None:
    assert "abc123" not in redact('"WebSocket /dev?apiKey=abc123" 401')
    assert "abc123" not in redact("x-api-key: abc123")
    assert "cck_live_secret" not in redact("failed for cck_live_secretvalue")
    assert "tok" not in redact("POST /api/channel/v2/sendMessage?token=tok")


async def test_a_full_session_logs_no_secret(tmp_path: Path) -> None:
    key = new_key()
    wrong = "cck_wrong_" + "z" * 20
    gateway = GatewayProcess(tmp_path / "logs.db", [key], env={"CAPTIVATE_LOG_LEVEL": "debug"}).start()
    try:
        async with WireClient(gateway.http_url, gateway.ws_url, key) as client:
            cid = await client.start("logger")
            await client.say(cid, "hello")
            await client.expect("bot_message")
            await client.ok("get_user_conversations_v2", {"userId": "logger", "apiKeys": [key]})
            await client.post("get_user_conversations_v2", {"userId": "logger", "apiKeys": [wrong]})
            await client.ws.send("not json")
            await client.expect("general_error")
        for bad in (wrong, key + "x"):
            try:
                await websockets.connect(f"{gateway.ws_url}/dev?apiKey={bad}")
            except websockets.InvalidStatus:
                pass
        await asyncio.sleep(0.2)
    finally:
        gateway.stop()
    logs = gateway.logs()
    assert "WebSocket /dev" in logs  # uvicorn did log the request line...
    for secret in (key, wrong, key[4:20]):
        assert secret not in logs  # ...without the key
