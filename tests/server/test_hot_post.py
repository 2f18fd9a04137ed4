"""The client-event POST as ``serve`` serves it, straight from the HTTP protocol (server/fastpath.py
``HotPost``), checked byte by byte on raw connections: keep-alive, pipelining (in order, mixed with
requests of the ASGI app), bodies that arrive in pieces, too large (declared, or streamed in chunks),
HTTP/1.0, a client gone mid-body, malformed requests; each refusal a JSON ``{error_code, error_desc}``
with the headers the ASGI path gave it, counted in the metrics and written to the access log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path

import httpx

from harness.gateway import GatewayProcess, new_key
from harness.wire import MESSAGE_PATH, envelope


def post(key: str, body: bytes, *, version: bytes = b"1.1", extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/%s\r\nhost: x\r\nx-api-key: %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n%s\r\n%s"
        % (MESSAGE_PATH.encode(), version, key.encode(), len(body), extra, body)
    )


def start_body(user: str = "hot-user") -> bytes:
    return json.dumps(envelope("conversation_start", {"userId": user})).encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
    return status, headers, body


async def connect(gateway: GatewayProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gateway.port)


def refusal(status: int, headers: dict[str, str], body: bytes, code: int) -> str:
    assert status == code, (status, body)
    assert headers["content-type"] == "application/json"
    parsed = json.loads(body)
    assert parsed["error_code"] == code and isinstance(parsed["error_desc"], str), parsed
    return str(parsed["error_desc"])


async def test_keep_alive_and_pipelined_requests_are_answered_in_order(
    gateway: GatewayProcess, api_key: str
) -> None:
    reader, writer = await connect(gateway)
    try:
        for _ in range(3):  # one connection, one request after the other
            writer.write(post(api_key, start_body()))
            status, headers, body = await read_response(reader)
            assert status == 200 and headers["content-type"] == "application/json"
            assert json.loads(body)["conversation_id"]
            assert headers["date"] and headers["server"] == "uvicorn" and "connection" not in headers
        # pipelined, in one write: hot POSTs and requests of the ASGI app between them
        writer.write(
            post(api_key, start_body("first"))
            + post(api_key, b"{not json")
            + b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
            + post("cck_wrong_" + "z" * 20, start_body())
            + post(api_key, start_body("last"))
        )
        answers = [await read_response(reader) for _ in range(5)]
        assert [a[0] for a in answers] == [200, 400, 200, 401, 200]
        assert json.loads(answers[2][2]) == {"status": "ok"}
        refusal(*answers[1], 400)
        assert refusal(*answers[3], 401) == "missing or invalid x-api-key"
        first, last = json.loads(answers[0][2]), json.loads(answers[4][2])
        assert first["conversation_id"] != last["conversation_id"]
    finally:
        writer.close()


async def test_a_body_in_pieces_and_a_client_gone_mid_body(gateway: GatewayProcess, api_key: str) -> None:
    body = start_body()
    reader, writer = await connect(gateway)
    try:
        request = post(api_key, body)
        head = request[: len(request) - len(body)]
        writer.write(head)
        for i in range(0, len(body), 7):
            await asyncio.sleep(0.02)
            writer.write(body[i : i + 7])
        status, _, answer = await read_response(reader)
        assert status == 200 and json.loads(answer)["conversation_id"]
    finally:
        writer.close()
    # gone before its body is complete: nothing answered, nothing logged as a failure; the gateway serves on
    reader, writer = await connect(gateway)
    writer.write(head + body[:10])
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await asyncio.sleep(0.2)
    reader, writer = await connect(gateway)
    try:
        writer.write(post(api_key, body))
        assert (await read_response(reader))[0] == 200
    finally:
        writer.close()
    logs = gateway.logs()
    assert "Traceback" not in logs and "unhandled error" not in logs


async def test_too_large_bodies_get_a_413_and_the_connection_serves_on(
    gateway: GatewayProcess, api_key: str
) -> None:
    limit = 256 * 1024  # the default max_body_bytes
    reader, writer = await connect(gateway)
    try:
        # declared too large: answered before the body is sent; the body that follows is read and dropped
        writer.write(
            b"POST %s HTTP/1.1\r\nhost: x\r\nx-api-key: %s\r\ncontent-length: %d\r\n\r\n"
            % (MESSAGE_PATH.encode(), api_key.encode(), limit + 1)
        )
        desc = refusal(*(await read_response(reader)), 413)
        assert desc == f"request body larger than {limit} bytes"
        writer.write(b" " * (limit + 1))
        writer.write(post(api_key, start_body()))
        assert (await read_response(reader))[0] == 200
        # chunked, no declared length: 413 once the bytes so far pass the limit
        writer.write(
            b"POST %s HTTP/1.1\r\nhost: x\r\nx-api-key: %s\r\ntransfer-encoding: chunked\r\n\r\n"
            % (MESSAGE_PATH.encode(), api_key.encode())
        )
        chunk = b"x" * 65536
        for _ in range(5):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        desc = refusal(*(await read_response(reader)), 413)
        writer.write(b"0\r\n\r\n")
        writer.write(post(api_key, start_body()))
        assert (await read_response(reader))[0] == 200
    finally:
        writer.close()


async def test_http_1_0_is_answered_and_closed(gateway: GatewayProcess, api_key: str) -> None:
    reader, writer = await connect(gateway)
    try:
        writer.write(post(api_key, start_body(), version=b"1.0"))
        status, headers, body = await read_response(reader)
        assert status == 200 and headers["connection"] == "close" and json.loads(body)["conversation_id"]
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    finally:
        writer.close()


async def test_refusals_keep_their_headers_counts_and_log_lines(
    gateway: GatewayProcess, api_key: str
) -> None:
    async def errors(code: str) -> float:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{gateway.http_url}/metrics")).text
        pattern = rf'captivate_errors_total\{{[^}}]*error_code="{code}"[^}}]*source="http"[^}}]*\}} (\S+)'
        found = re.search(pattern, text) or re.search(
            rf'captivate_errors_total\{{[^}}]*source="http"[^}}]*error_code="{code}"[^}}]*\}} (\S+)', text
        )
        return float(found.group(1)) if found else 0.0

    before = await errors("401"), await errors("400")
    reader, writer = await connect(gateway)
    try:
        writer.write(post("cck_wrong_" + "q" * 20, start_body()))
        refusal(*(await read_response(reader)), 401)
        twice = b"x-api-key: " + api_key.encode() + b"x\r\n"  # a second, different key: ambiguous
        writer.write(post(api_key, start_body(), extra=twice))
        assert "ambiguous credential" in refusal(*(await read_response(reader)), 400)
    finally:
        writer.close()
    assert (await errors("401"), await errors("400")) == (before[0] + 1, before[1] + 1)
    for _ in range(50):
        logs = gateway.logs()
        if f"POST {MESSAGE_PATH} 401" in logs and f"POST {MESSAGE_PATH} 400" in logs:
            break
        await asyncio.sleep(0.1)
    assert f"POST {MESSAGE_PATH} 401" in logs and f"POST {MESSAGE_PATH} 400" in logs
    assert api_key not in logs and "cck_wrong_" not in logs


async def test_a_browser_post_keeps_its_cors_answer(gateway: GatewayProcess, api_key: str) -> None:
    """With an ``Origin``, the POST goes down the ASGI stack (its CORS headers): answered the same."""
    async with httpx.AsyncClient(base_url=gateway.http_url) as http:
        response = await http.post(
            MESSAGE_PATH,
            content=start_body(),
            headers={
                "x-api-key": api_key,
                "origin": "http://example.test",
                "content-type": "application/json",
            },
        )
    assert response.status_code == 200 and response.json()["conversation_id"]


async def test_a_malformed_request_gets_a_json_400(gateway: GatewayProcess) -> None:
    reader, writer = await connect(gateway)
    try:
        writer.write(b"POST " + MESSAGE_PATH.encode() + b" HTTP/1.1\r\ncontent-length: nope\r\n\r\n")
        refusal(*(await read_response(reader)), 400)
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


DEADLINE = 0.4
"""The head and keep-alive deadlines of the test below, in seconds."""


async def test_the_deadlines_count_from_the_last_request(tmp_path: Path) -> None:
    """The head deadline and the keep-alive timeout are set once and moved by each request (server/
    connections.py): a connection busy for longer than both is not cut; idle, it is closed after the
    keep-alive timeout; a head that stalls after many requests gets its 408 a head timeout after it began."""
    key = new_key()
    # 0.4 s deadlines (not 1 s): the same proof in less time — each busy spell still outlasts both 2.5
    # times over, with requests DEADLINE / 4 apart (well inside either deadline), and each deadline is
    # checked to within 0.8 to 2.5 times its length
    env = {"CAPTIVATE_HEADER_TIMEOUT": f"{DEADLINE:g}", "CAPTIVATE_KEEP_ALIVE_TIMEOUT": f"{DEADLINE:g}"}
    gateway = GatewayProcess(tmp_path / "gw.db", [key], env=env).start()
    try:
        reader, writer = await connect(gateway)
        began = time.monotonic()
        while time.monotonic() - began < 2.5 * DEADLINE:  # busy for longer than either timeout
            writer.write(post(key, start_body()))
            assert (await read_response(reader))[0] == 200
            idle = time.monotonic()
            await asyncio.sleep(DEADLINE / 4)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then idle: closed
        assert 0.8 * DEADLINE < time.monotonic() - idle < 2.5 * DEADLINE
        writer.close()

        reader, writer = await connect(gateway)
        began = time.monotonic()
        while time.monotonic() - began < 2.5 * DEADLINE:
            writer.write(post(key, start_body()))
            assert (await read_response(reader))[0] == 200
            await asyncio.sleep(DEADLINE / 4)
        stalled = time.monotonic()
        writer.write(b"POST " + MESSAGE_PATH.encode() + b" HTTP/1.1\r\nhost: x\r\n")  # never finished
        answer = await asyncio.wait_for(reader.read(4096), 5)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert 0.8 * DEADLINE < time.monotonic() - stalled < 2.5 * DEADLINE
        writer.close()
    finally:
        gateway.stop()
