"""No API key ever reaches a log line, even though the WebSocket URL carries it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import httpx
import websockets

from captivate_chat_api.redact import _PATTERNS
from captivate_chat_api.server.logs import redact
from harness.gateway import GatewayProcess, new_key
from harness.wire import MESSAGE_PATH, WireClient, envelope


def test_redact_covers_query_strings_headers_and_key_shapes() -> None:
    assert "abc123" not in redact('"WebSocket /dev?apiKey=abc123" 401')
    assert "abc123" not in redact("x-api-key: abc123")
    assert "cck_live_secret" not in redact("failed for cck_live_secretvalue")
    assert "tok" not in redact("POST /api/channel/v2/sendMessage?token=tok")


def test_redact_skips_only_lines_no_pattern_can_match() -> None:
    """``redact`` skips the regular expressions for a line none of them can match (an access line): its
    answer is always the four patterns' answer, whatever the case and place of what they look for."""

    def every_pattern(text: str) -> str:
        for pattern in _PATTERNS:
            text = pattern.sub(r"\1[REDACTED]", text)
        return text

    parts = [
        "POST /api/custom-channel/sockets/message 200 1.2ms",
        "apiKey=",
        "API_KEY: ",
        "x-Api-Key=",
        "TOKEN=",
        "x-agent-TOKEN: ",
        "Token:",
        "cck_",
        "cca_",
        "CCK_",
        "?",
        "/files/",
        "/FILES/",
        "abcdefgh12345678",
        "secret-value_0123456789abcdef",
        " ",
        "&",
        '"',
        "'",
        "=",
        ":",
        "\u212a" + "ey=",
        "monkey",
        "tokens",
    ]
    rng = random.Random(14)
    lines = ["GET /healthz 200 0.4ms", "POST /api/custom-channel/sockets/message 401 2.0ms", ""]
    lines += ["".join(rng.choice(parts) for _ in range(rng.randint(1, 6))) for _ in range(3000)]
    for line in lines:
        assert redact(line) == every_pattern(line), line
    assert redact("POST /api/custom-channel/sockets/message 200 1.2ms") == (
        "POST /api/custom-channel/sockets/message 200 1.2ms"
    )


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


async def test_buffered_lines_reach_the_log_within_an_iteration_in_order_and_at_shutdown(
    tmp_path: Path,
) -> None:
    """Lines are written once per event-loop iteration: the access line of the last request reaches
    stderr while the gateway idles (not at its shutdown), every request's line is there in order, and the
    lines of the shutdown itself are written before the process ends."""
    key = new_key()
    wrong = "cck_wrong_" + "w" * 20
    gateway = GatewayProcess(tmp_path / "buffered.db", [key], env={"CAPTIVATE_LOG_FORMAT": "json"}).start()
    body = json.dumps(envelope("conversation_start", {"userId": "buffered"})).encode()
    statuses = [200 if i % 3 else 401 for i in range(24)]
    try:
        async with httpx.AsyncClient(base_url=gateway.http_url) as http:
            for status in statuses:
                answer = await http.post(
                    MESSAGE_PATH, content=body, headers={"x-api-key": key if status == 200 else wrong}
                )
                assert answer.status_code == status

        def access() -> list[int]:
            lines = [json.loads(line) for line in "".join(gateway.stderr).splitlines() if line.strip()]
            return [
                int(entry["message"].split()[2])
                for entry in lines
                if entry["logger"] == "captivate_chat_api.access" and MESSAGE_PATH in entry["message"]
            ]

        deadline = time.monotonic() + 2.0
        while access() != statuses and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert access() == statuses  # while the gateway is up and idle
    finally:
        gateway.stop()
    logs = gateway.logs()
    assert "Finished server process" in logs  # uvicorn's last line, logged as the loop ends
    assert key not in logs and wrong not in logs
