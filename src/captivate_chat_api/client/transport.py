"""How the client reaches the platform: a small seam (in the manner of httpx's transports).

A :class:`Transport` opens the socket platform events arrive on, sends a client event, and closes.
Three implementations:

- :class:`HttpTransport`: events by HTTP POST with the socket's id, as the npm client 7.0.0 (default);
- :class:`WebSocketTransport`: events as WebSocket frames with a ``request_id`` (1.x style);
- :class:`InProcessTransport`: calls a gateway's ASGI app directly, no sockets (for tests; see
  :mod:`captivate_chat_api.testing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal, Protocol

import httpx
import websockets
from websockets.frames import Close

from ..errors import AuthenticationError, ChatConnectionError, RequestTimeoutError
from ..protocol import encode_envelope
from ..redact import RedactSecrets
from .backoff import ReconnectPolicy
from .endpoints import Endpoints
from .http import HttpChannel

TransportName = Literal["http", "websocket"]

# The websockets library logs the request line, which carries the key: its records go through a redactor.
ws_log = logging.getLogger("captivate_chat_api.client.websocket")
ws_log.addFilter(RedactSecrets())


class FrameSocket(Protocol):
    """The socket platform events arrive on. ``recv`` raises ``websockets.ConnectionClosed`` at the end."""

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Transport(Protocol):
    """Send an envelope, receive frames, close."""

    name: str
    """``"http"`` or ``"websocket"``: the path client events take."""
    replies_inline: bool
    """True: :meth:`send` returns the reply (HTTP). False: the reply arrives as a frame on the socket."""

    @property
    def http(self) -> HttpChannel:
        """Plain HTTP for what is never a client event (transcript over HTTP, large messages, file URLs)."""
        ...

    async def connect(
        self, url: str, *, timeout: float, ping_interval: float | None, ping_timeout: float | None
    ) -> FrameSocket:
        """Open the socket (``url`` carries the ``apiKey``). Raises AuthenticationError, ChatConnectionError,
        RequestTimeoutError."""
        ...

    async def send(
        self, socket: FrameSocket | None, envelope: dict[str, Any], *, socket_id: str | None, idempotent: bool
    ) -> dict[str, Any] | None:
        """Send one client envelope; the reply's payload when :attr:`replies_inline`, else None."""
        ...

    async def aclose(self) -> None:
        """Release what the transport owns (its HTTP client)."""
        ...


CLOSE_TIMEOUT = 2.0
"""Seconds the closing handshake of a socket may take (then the connection is dropped)."""


async def open_websocket(
    url: str, *, timeout: float, ping_interval: float | None, ping_timeout: float | None
) -> FrameSocket:
    """A real WebSocket (the ``websockets`` library), errors translated to the package's hierarchy.

    The closing handshake is given as long as a pong (``ping_timeout``), at most 2 s: a socket whose ping
    timed out is dropped (and reconnected) that much later, not 2 s after its link was found dead."""
    close_timeout = CLOSE_TIMEOUT if ping_timeout is None else min(CLOSE_TIMEOUT, ping_timeout)
    try:
        socket: FrameSocket = await websockets.connect(
            url,
            open_timeout=timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_size=None,
            logger=ws_log,
        )
    except websockets.InvalidStatus as exc:
        raise refused(exc.response.status_code) from None
    except (OSError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
        raise ChatConnectionError(f"cannot open the WebSocket: {exc}") from None
    except TimeoutError:
        raise RequestTimeoutError(f"the WebSocket did not open within {timeout:g} s") from None
    return socket


def refused(status: int) -> Exception:
    if status in (401, 403):
        return AuthenticationError(status, "the API key was refused")
    return ChatConnectionError(f"WebSocket upgrade refused with HTTP {status}")


class HttpTransport:
    """Client events by HTTP POST, platform events on a WebSocket (npm 7.0.0's path)."""

    name = "http"
    replies_inline = True

    def __init__(self, http: HttpChannel) -> None:
        self._http = http

    @property
    def http(self) -> HttpChannel:
        return self._http

    async def connect(
        self, url: str, *, timeout: float, ping_interval: float | None, ping_timeout: float | None
    ) -> FrameSocket:
        return await open_websocket(
            url, timeout=timeout, ping_interval=ping_interval, ping_timeout=ping_timeout
        )

    async def send(
        self, socket: FrameSocket | None, envelope: dict[str, Any], *, socket_id: str | None, idempotent: bool
    ) -> dict[str, Any] | None:
        return await self.http.send_envelope(envelope, socket_id, idempotent=idempotent)

    async def aclose(self) -> None:
        await self.http.aclose()


class WebSocketTransport(HttpTransport):
    """Client events as WebSocket frames with a ``request_id`` (1.x's path); replies come as frames."""

    name = "websocket"
    replies_inline = False

    async def send(
        self, socket: FrameSocket | None, envelope: dict[str, Any], *, socket_id: str | None, idempotent: bool
    ) -> dict[str, Any] | None:
        if socket is None:
            raise ChatConnectionError(f"{envelope['event']['event_type']}: not connected")
        try:
            await socket.send(json.dumps(envelope, separators=(",", ":")))
        except websockets.ConnectionClosed as exc:
            raise ChatConnectionError(
                f"{envelope['event']['event_type']}: the socket closed while sending"
            ) from exc
        return None


# in-process ------------------------------------------------------------------------------------------

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


class AsgiSocket:
    """A WebSocket served by calling an ASGI app's ``websocket`` scope directly (no network)."""

    def __init__(self, app: ASGIApp, url: httpx.URL) -> None:
        self._app = app
        self._url = url
        self._inbound: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._outbound: asyncio.Queue[str | bytes | Close] = asyncio.Queue()
        self._accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._closed: Close | None = None

    async def open(self, timeout: float) -> None:
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": self._url.path,
            "raw_path": self._url.raw_path.split(b"?")[0],
            "query_string": self._url.query,
            "root_path": "",
            "headers": [(b"host", self._url.netloc)],
            "client": ("127.0.0.1", 123),
            "server": (self._url.host, self._url.port or 80),
            "subprotocols": [],
            "extensions": {"websocket.http.response": {}},
        }
        await self._inbound.put({"type": "websocket.connect"})
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        try:
            status = await asyncio.wait_for(asyncio.shield(self._accepted), timeout)
        except TimeoutError:
            await self.close()
            raise RequestTimeoutError(f"the in-process WebSocket did not open within {timeout:g} s") from None
        if status != 101:
            await self.close()
            raise refused(status)

    async def _run(self, scope: MutableMapping[str, Any]) -> None:
        try:
            await self._app(scope, self._inbound.get, self._from_app)
        except Exception as exc:  # noqa: BLE001 (the app failed: the socket ends, as a server's would)
            logging.getLogger("captivate_chat_api.client").debug("in-process app failed: %r", exc)
        finally:
            if not self._accepted.done():
                self._accepted.set_result(500)
            self._outbound.put_nowait(Close(1011 if self._closed is None else self._closed.code, ""))

    async def _from_app(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept" and not self._accepted.done():
            self._accepted.set_result(101)
        elif kind == "websocket.http.response.start" and not self._accepted.done():
            self._accepted.set_result(int(message["status"]))
        elif kind == "websocket.close":
            if not self._accepted.done():
                self._accepted.set_result(403)
            self._closed = Close(int(message.get("code", 1000)), str(message.get("reason") or ""))
            self._outbound.put_nowait(self._closed)
        elif kind == "websocket.send":
            text = message.get("text")
            self._outbound.put_nowait(text if text is not None else bytes(message.get("bytes") or b""))

    async def recv(self) -> str | bytes:
        item = await self._outbound.get()
        if isinstance(item, Close):
            self._outbound.put_nowait(item)  # every later recv ends too
            raise websockets.ConnectionClosed(item, None)
        return item

    async def send(self, message: str) -> None:
        if self._closed is not None or self._task is None or self._task.done():
            raise websockets.ConnectionClosed(self._closed, None)
        await self._inbound.put({"type": "websocket.receive", "text": message})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._task is None:
            return
        if not self._task.done():
            await self._inbound.put({"type": "websocket.disconnect", "code": code, "reason": reason})
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            if not self._task.done():
                self._task.cancel()
        if self._closed is None:
            self._closed = Close(code, reason)
            self._outbound.put_nowait(self._closed)

    def __aiter__(self) -> AsgiSocket:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except websockets.ConnectionClosed:
            raise StopAsyncIteration from None


class InProcessTransport:
    """Calls a gateway's ASGI app directly: HTTP through ``httpx.ASGITransport``, the socket through the
    app's ``websocket`` scope. ``messages`` picks the path client events take (``"http"`` or ``"websocket"``).

    The app's lifespan is not run here: see :func:`captivate_chat_api.testing.in_process_gateway`.
    """

    def __init__(self, app: ASGIApp, *, messages: str = "http") -> None:
        if messages not in ("http", "websocket"):
            raise ValueError("messages must be 'http' or 'websocket'")
        self.app = app
        self.name = messages
        self.replies_inline = messages == "http"
        self._inner: HttpTransport | None = None

    def http_client(self, timeout: float) -> httpx.AsyncClient:
        """The HTTP client the client's :class:`HttpChannel` should use: one that calls the app."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), timeout=timeout)

    def bind(self, http: HttpChannel) -> None:
        """Take the client's HTTP channel (made with :meth:`http_client`)."""
        self._inner = (HttpTransport if self.replies_inline else WebSocketTransport)(http)

    @property
    def http(self) -> HttpChannel:
        if self._inner is None:
            raise RuntimeError("the in-process transport is not bound to a client yet")
        return self._inner.http

    async def connect(
        self, url: str, *, timeout: float, ping_interval: float | None, ping_timeout: float | None
    ) -> FrameSocket:
        socket = AsgiSocket(self.app, httpx.URL(url))
        await socket.open(timeout)
        return socket

    async def send(
        self, socket: FrameSocket | None, envelope: dict[str, Any], *, socket_id: str | None, idempotent: bool
    ) -> dict[str, Any] | None:
        if self._inner is None:
            raise RuntimeError("the in-process transport is not bound to a client yet")
        return await self._inner.send(socket, envelope, socket_id=socket_id, idempotent=idempotent)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


def envelope_for(event_type: str, payload: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """The client envelope ``{"event": {...}}`` (with the WebSocket transport's ``request_id``)."""
    envelope = encode_envelope(event_type, payload)
    if request_id:
        envelope["request_id"] = request_id
    return envelope


def make_transport(
    choice: TransportName | InProcessTransport,
    api_key: str,
    endpoints: Endpoints,
    timeout: float,
    retry: ReconnectPolicy,
    http_client: httpx.AsyncClient | None = None,
) -> Transport:
    """The transport for a client's ``transport`` argument, with its HTTP channel."""
    if isinstance(choice, InProcessTransport):
        choice.bind(
            HttpChannel(
                api_key,
                endpoints,
                timeout=timeout,
                retry=retry,
                client=choice.http_client(timeout),
                owns_client=True,
            )
        )
        return choice
    kinds: dict[str, type[HttpTransport]] = {"http": HttpTransport, "websocket": WebSocketTransport}
    if choice not in kinds:
        raise ValueError("transport must be 'http' or 'websocket'")
    return kinds[choice](HttpChannel(api_key, endpoints, timeout=timeout, retry=retry, client=http_client))


def same_transport(transport: Transport) -> TransportName | InProcessTransport:
    """The ``transport`` argument that makes another client like this one (a fresh in-process transport)."""
    if isinstance(transport, InProcessTransport):
        return InProcessTransport(transport.app, messages=transport.name)
    return "websocket" if transport.name == "websocket" else "http"
