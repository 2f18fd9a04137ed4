"""A raw protocol client for tests: a WebSocket plus HTTP posts, no SDK in between."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import ssl
from collections.abc import Callable
from typing import Any, Self

import httpx
import websockets

MESSAGE_PATH = "/api/custom-channel/sockets/message"


@functools.cache
def tls() -> ssl.SSLContext:
    """httpx's default TLS context, made once per test process: ``httpx.AsyncClient()`` loads the CA bundle
    (~20 ms of CPU) for every client otherwise, even one that only ever speaks plain HTTP to a gateway."""
    return httpx.create_ssl_context()


def envelope(
    event_type: str, payload: dict[str, Any], socket_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {"event_type": event_type, "event_payload": payload}
    if socket_id is not None:
        event["socket_id"] = socket_id
    return {"action": "sendMessage", "event": event, **extra}


class WireClient:
    def __init__(self, http_url: str, ws_url: str, api_key: str) -> None:
        self.http_url, self.ws_url, self.api_key = http_url, ws_url, api_key
        self.ws: Any = None
        self.socket_id: str | None = None
        self.http = httpx.AsyncClient(
            base_url=http_url, headers={"x-api-key": api_key}, timeout=10, verify=tls()
        )
        self.frames: list[dict[str, Any]] = []

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        self.ws = await websockets.connect(
            f"{self.ws_url}/dev?apiKey={self.api_key}", max_size=2**22, close_timeout=1
        )
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert hello["event"]["event_type"] == "socket_connected", hello
        self.socket_id = hello["event"]["event_payload"]["socket_id"]

    async def close(self) -> None:
        """Close the socket, reading (and dropping) what the gateway sent that the test did not read: with
        more than ``max_queue`` (16) frames unread, the client stops reading its TCP stream, so the
        gateway's close frame behind them would only be seen after ``close_timeout`` (1 s)."""
        if self.ws is not None:
            closing = asyncio.ensure_future(self.ws.close())
            try:
                while not closing.done():
                    unread = asyncio.ensure_future(self.ws.recv())
                    await asyncio.wait({closing, unread}, return_when=asyncio.FIRST_COMPLETED)
                    if not unread.done():
                        unread.cancel()
                    with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                        await unread
            finally:
                await closing
        await self.http.aclose()

    async def post(self, event_type: str, payload: dict[str, Any], *, socket: bool = True) -> httpx.Response:
        body = envelope(event_type, payload, self.socket_id if socket else None)
        return await self.http.post(MESSAGE_PATH, json=body)

    async def ok(self, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = await self.post(event_type, payload)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def send_ws(self, event_type: str, payload: dict[str, Any], **extra: Any) -> None:
        await self.ws.send(json.dumps(envelope(event_type, payload, **extra)))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def expect(
        self, event_type: str, where: Callable[[dict[str, Any]], bool] = lambda p: True, timeout: float = 10
    ) -> dict[str, Any]:
        """The payload of the next frame of ``event_type`` matching ``where`` (other frames are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {event_type} within {timeout}s; saw {self.frames[-5:]}")
            try:
                frame = await self.recv(remaining)
            except TimeoutError:
                raise AssertionError(f"no {event_type} within {timeout}s; saw {self.frames[-5:]}") from None
            event = frame["event"]
            if event["event_type"] == event_type and where(event["event_payload"]):
                payload: dict[str, Any] = event["event_payload"]
                return payload

    async def start(self, user_id: str = "u1", **payload: Any) -> str:
        body = await self.ok("conversation_start", {"userId": user_id, **payload})
        started = await self.expect("conversation_start_success")
        assert started["conversation_id"] == body["conversation_id"]
        return str(body["conversation_id"])

    async def say(self, conversation_id: str, text: str, client_msg_id: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "conversation_id": conversation_id,
            "type": "message_create",
            "content": {"type": "text", "text": text},
        }
        if client_msg_id:
            payload["client_msg_id"] = client_msg_id
        return await self.ok("user_message", payload)
