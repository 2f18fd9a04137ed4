"""A small client of the gateway's human-agent API: REST to act, a WebSocket feed to follow.

Third-party errors (httpx, websockets) become the package's errors here, at one boundary. The token goes in
the ``x-agent-token`` header, never in a URL, so it cannot end up in an error message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from ..client.endpoints import Endpoints
from ..client.http import default_ssl_context, error_from_response
from ..errors import AuthenticationError, ChatConnectionError, RequestTimeoutError

TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One frame of the agent feed: its type and payload (``conversation_id`` when it is about one)."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def conversation_id(self) -> str | None:
        value = self.payload.get("conversation_id")
        return value if isinstance(value, str) else None


def _event(raw: str | bytes) -> FeedEvent | None:
    try:
        event = json.loads(raw)["event"]
        payload = event.get("event_payload") or {}
        return FeedEvent(str(event["event_type"]), payload if isinstance(payload, dict) else {})
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # not a frame of ours: ignored rather than fatal


class AgentFeed:
    """An open ``/api/agent/ws``: its ``socket_id`` (pass it to take/send) and the events that follow."""

    def __init__(self, ws: ClientConnection, socket_id: str) -> None:
        self.ws = ws
        self.socket_id = socket_id

    async def events(self) -> AsyncIterator[FeedEvent]:
        """Events until the connection closes (normally or not)."""
        try:
            async for raw in self.ws:
                event = _event(raw)
                if event is not None:
                    yield event
        except websockets.ConnectionClosed:
            return

    async def close(self) -> None:
        await self.ws.close()


class AgentAPI:
    """The human-agent API of one gateway, with one ``human`` token (scoped to one channel)."""

    def __init__(self, url: str, token: str, name: str | None = None, timeout: float = TIMEOUT) -> None:
        endpoints = Endpoints.resolve(base_url=url)  # ValueError for a URL that is not http(s)
        self.url = endpoints.http_base
        self.ws_url = endpoints.ws_url.removesuffix("/dev") + "/api/agent/ws"
        self.name = name
        self._token = token
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=f"{self.url}/api/agent",
            headers={"x-agent-token": token},
            timeout=timeout,
            verify=default_ssl_context(),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, json=body, params=params)
        except httpx.TimeoutException:
            raise RequestTimeoutError(f"{self.url} did not answer within {self._timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ChatConnectionError(f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise error_from_response(response)
        try:
            data = response.json()
        except ValueError:
            raise ChatConnectionError(
                f"{self.url} did not answer as a Captivate Chat gateway (no JSON)"
            ) from None
        return data if isinstance(data, dict) else {}

    def _who(self, socket_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {}  # who acts is the token's agent: the gateway takes the name from it
        if socket_id:
            body["socket_id"] = socket_id
        return body

    async def conversations(self, state: str | None = None) -> list[dict[str, Any]]:
        """Conversations waiting for a human or live with one (``state``: one of them, default both)."""
        data = await self._call("GET", "/conversations", params={"state": state} if state else None)
        return [c for c in data.get("conversations", []) if isinstance(c, dict)]

    async def conversation(self, conversation_id: str, socket_id: str | None = None) -> dict[str, Any]:
        """Summary, public and private metadata, and transcript; with ``socket_id``, that feed follows the
        conversation from before the read on (events may repeat: their ``seq`` tells)."""
        params = {"socket_id": socket_id} if socket_id else None
        return await self._call("GET", f"/conversations/{conversation_id}", params=params)

    async def take(self, conversation_id: str, socket_id: str | None = None) -> dict[str, Any]:
        return await self._call("POST", f"/conversations/{conversation_id}/take", self._who(socket_id))

    async def send(self, conversation_id: str, text: str, socket_id: str | None = None) -> dict[str, Any]:
        return await self._call(
            "POST", f"/conversations/{conversation_id}/messages", {"text": text, **self._who(socket_id)}
        )

    async def end(self, conversation_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/conversations/{conversation_id}/end")

    async def escalate(self, conversation_id: str, reason: str | None = None) -> dict[str, Any]:
        return await self._call(
            "POST", f"/conversations/{conversation_id}/escalate", {"reason": reason} if reason else {}
        )

    async def open_feed(self) -> AgentFeed:
        """Connect the live feed and wait for ``agent_connected``."""
        try:
            ws = await websockets.connect(
                self.ws_url,
                additional_headers={"x-agent-token": self._token},
                open_timeout=self._timeout,
                close_timeout=2,
                max_size=2**24,
            )
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise AuthenticationError(status, "missing or invalid agent token") from None
            raise ChatConnectionError(f"the live feed was refused with HTTP {status}") from None
        except (OSError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            raise ChatConnectionError(f"cannot open the live feed at {self.ws_url}: {exc}") from None
        except TimeoutError:
            raise RequestTimeoutError(f"the live feed did not open within {self._timeout:g} s") from None
        try:
            async with asyncio.timeout(self._timeout):
                async for raw in ws:
                    event = _event(raw)
                    if event is not None and event.type == "agent_connected":
                        return AgentFeed(ws, str(event.payload.get("socket_id")))
        except (TimeoutError, websockets.ConnectionClosed):
            pass
        await ws.close()
        raise ChatConnectionError("the live feed closed before agent_connected")
