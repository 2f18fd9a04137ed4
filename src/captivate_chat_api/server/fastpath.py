"""The hot HTTP route, the client-event POST, served without the ASGI stack.

Every message sent over HTTP goes through it. Under ``serve`` :class:`HotPost` serves it straight from
uvicorn's HTTP protocol (:func:`.connections.protocol_class` hands it the request once its head is parsed):
no ASGI scope walk through the middleware, no receive/send coroutines, no Starlette request or response,
no per-request event. It stands in for uvicorn's ``RequestResponseCycle``, so uvicorn's protocol still does
keep-alive, pipelining (a request waits for the one before it), flow control, the keep-alive timeout and
the graceful shutdown, and the request is still a task in the server's task set. In the ASGI app itself
(``create_app`` in-process, a test's ASGI client) :class:`FastPaths` serves it at the top of the app.

Both do themselves the parts of the stack that apply: the error answers of the app's exception handlers
(called with a Starlette request built from the scope, so every refusal has the same status, headers and
``{error_code, error_desc}`` body), the error counts of :class:`.metrics.MetricsMiddleware`, the access
log line (the path, never a query string). A request whose query holds a NUL goes down the stack, where
:class:`.app.RefuseNul` answers it; a POST from a browser page (it has an ``Origin``) goes down the stack
too, for its CORS headers. Everything else goes down the stack unchanged.
The other hot route, the ``/dev`` WebSocket, is served below ASGI by :class:`.client_socket.ClientSocket`
under ``serve``; over ASGI (the app in-process) it is the router's.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette._utils import get_route_path
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..protocol import ProtocolError
from .logs import log_access
from .metrics import Metrics
from .routes.http import MESSAGE_PATH, channel_of, client_event, post_client_event

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger("captivate_chat_api.server")


def _from_browser(scope: Scope) -> bool:
    """A request with an ``Origin`` (a page's fetch) goes down the stack, through :class:`.cors.BrowserCors`."""
    return any(name == b"origin" for name, _ in scope["headers"])


def has_nul(scope: Scope) -> bool:
    """A query holding a NUL: answered down the stack, by :class:`.app.RefuseNul`."""
    query = scope.get("query_string", b"")
    return b"%00" in query or b"\x00" in query


class FastPaths:
    def __init__(self, app: Any, stack: ASGIApp, metrics: Metrics, *, access_log: bool) -> None:
        self.app = app
        """The FastAPI app: its exception handlers answer the POST's errors, as they would down the stack."""
        self.stack = stack
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and get_route_path(scope) == MESSAGE_PATH
            and not has_nul(scope)
            and not _from_browser(scope)
        ):
            await self.post(scope, receive, send)
            return
        await self.stack(scope, receive, send)

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500
        try:
            request = Request(scope, receive)
            try:
                response = await post_client_event(request)
            except Exception as exc:  # noqa: BLE001 -- answered by the app's handler for it, as down the stack
                response = await self._answer(request, exc)
            status = response.status_code
            if status >= 400:
                self.metrics.error("http", status)
            await response(scope, receive, send)
        finally:
            if self.access_log:
                log_access("POST", scope["path"], status, started)

    async def _answer(self, request: Request, exc: Exception) -> Response:
        return await answer_error(self.app, request, exc)


async def answer_error(app: Any, request: Request, exc: Exception) -> Response:
    """The answer of ``app``'s exception handler for ``exc``, as down the stack."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            response: Response = await handler(request, exc)
            return response
    raise exc  # pragma: no cover - the app has a handler for Exception


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINE = {status: _status_line(status) for status in range(100, 600)}
"""As uvicorn writes them."""
_JSON_TYPE = b"content-type: application/json\r\n"
_CLOSE = b"connection: close\r\n"


def _nothing() -> None:
    pass


class HotPosts:
    """What the :class:`HotPost` requests of one server share: the FastAPI app (its gateway, metrics and
    exception handlers), the access-log setting and the headers every response carries."""

    def __init__(
        self, app: Any, *, access_log: bool, extra_headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.app = app
        self.access_log = access_log
        self._extra = b"".join(
            b"%s: %s\r\n" % (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in extra_headers
        )
        """More headers for every response (a worker's ``x-captivate-worker``, as :class:`.workers.WorkerHeader`)."""
        self._defaults: list[tuple[bytes, bytes]] | None = None
        self._head = self._extra
        self._gateway: Gateway | None = None
        self.metrics: Metrics = app.state.metrics

    def gateway(self) -> Gateway | None:
        """The gateway, once the app's lifespan has made it (None before: the ASGI path serves then)."""
        gateway = self._gateway
        if gateway is None:
            gateway = self._gateway = getattr(self.app.state, "gateway", None)
        return gateway

    def head(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        """uvicorn's default headers (``date``, ``server``; a new list every second) and ours, as bytes."""
        if default_headers is not self._defaults:
            self._head = b"".join(b"%s: %s\r\n" % pair for pair in default_headers) + self._extra
            self._defaults = default_headers
        return self._head

    async def answer(self, scope: Scope, exc: Exception) -> Response:
        """The app's answer to ``exc`` (its exception handlers, given a Starlette request of the scope)."""
        scope["app"] = self.app
        return await answer_error(self.app, Request(scope), exc)


class HotPost:
    """One client-event POST on an HTTP/1.1 connection of uvicorn's httptools protocol, in place of its
    ``RequestResponseCycle``: the protocol feeds it the body (:meth:`feed`, :meth:`complete`), starts
    :meth:`run_asgi` as the request's task (at once, or when the request it is pipelined behind is
    answered), reads ``response_complete`` / sets ``disconnected`` and ``keep_alive`` as on its own cycle,
    and is called back (``on_response``) once the answer is written. A body over ``max_body_bytes`` is
    not kept: 413 as soon as it is known (the declared length, or the bytes so far)."""

    __slots__ = (
        "_chunks",
        "_size",
        "_waiter",
        "disconnected",
        "flow",
        "keep_alive",
        "keys",
        "limit",
        "more_body",
        "on_response",
        "posts",
        "response_complete",
        "scope",
        "server_state",
        "too_large",
        "transport",
        "write",
    )

    def __init__(
        self,
        posts: HotPosts,
        protocol: Any,
        scope: Scope,
        keys: list[str],
        limit: int,
        *,
        keep_alive: bool,
        too_large: bool,
    ) -> None:
        self.posts = posts
        self.scope = scope
        self.transport: asyncio.Transport = protocol.transport
        self.write: Callable[[bytes], None] = getattr(self.transport, "write_now", self.transport.write)
        """The answer is one write: past :class:`.connections.JoinedWrites`' joining, at once."""
        self.flow = protocol.flow
        self.server_state = protocol.server_state
        self.on_response: Callable[[], None] = protocol.on_response_complete
        self.keys = keys
        """The request's ``x-api-key`` values."""
        self.limit = limit
        self.keep_alive = keep_alive
        self.too_large = too_large
        self.disconnected = False
        self.response_complete = False
        self.more_body = True
        self._chunks: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None

    # what uvicorn's protocol calls ---------------------------------------------------------------------

    @property
    def message_event(self) -> HotPost:
        """The protocol calls ``cycle.message_event.set()`` when the connection is lost: :meth:`set`."""
        return self

    def set(self) -> None:
        """Wake the request's task if it waits for its body."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, chunk: bytes) -> None:
        if self.response_complete or self.too_large:
            return  # answered early (a 413): the rest of the body is read and dropped
        self._size += len(chunk)
        if self._size > self.limit:
            self.too_large = True
            self._chunks.clear()
            self.set()
            return
        self._chunks.append(chunk)

    def complete(self) -> None:
        self.more_body = False
        self.set()

    # the request ---------------------------------------------------------------------------------------

    async def _body(self) -> bytes:
        while self.more_body and not self.too_large and not self.disconnected:
            self.flow.resume_reading()
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        if self.too_large:
            raise ProtocolError(413, f"request body larger than {self.limit} bytes")
        if self.disconnected:
            raise ClientDisconnect()
        chunks = self._chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def run_asgi(self, _app: object) -> None:
        """The request, from its head to its answer (uvicorn's name for a cycle's task)."""
        posts = self.posts
        started = time.perf_counter()
        status = 500
        after: Callable[[], None] | None = None
        try:
            try:
                gateway = posts.gateway()
                if gateway is None:  # pragma: no cover - the protocol hands over requests only once it exists
                    raise ProtocolError(503, "the gateway is not started yet; retry")
                channel, key = await channel_of(gateway, self.keys)
                content, after = await client_event(gateway, channel, key, await self._body())
                status = 200
                head = b"content-length: %d\r\n%s" % (len(content), _JSON_TYPE)
            except Exception as exc:  # noqa: BLE001 -- answered by the app's handler for it, as down the stack
                response = await posts.answer(self.scope, exc)
                status = response.status_code
                posts.metrics.error("http", status)
                content = bytes(response.body)
                head = b"".join(b"%s: %s\r\n" % pair for pair in response.raw_headers)
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()  # a client that does not read its answers is not sent more
            self._respond(status, head, content)
            if after is not None:
                try:
                    after()
                except Exception:  # the answer is sent; the agent's turn failed to start
                    log.exception("the agent's turn after %s could not start", MESSAGE_PATH)
        except BaseException:  # a cancellation (a shutdown past its grace period)
            if not self.response_complete:
                self.keep_alive = False
                status = 503
                self._respond(status, b"content-length: %d\r\n%s" % (len(_STOPPING), _JSON_TYPE), _STOPPING)
            raise
        finally:
            self.on_response = _nothing  # (it refers back to the protocol)
            if posts.access_log:
                log_access("POST", MESSAGE_PATH, status, started)

    def _respond(self, status: int, head: bytes, content: bytes) -> None:
        self.response_complete = True
        if self.disconnected:
            return
        self.write(
            b"".join(
                (
                    STATUS_LINE[status],
                    self.posts.head(self.server_state.default_headers),
                    head,
                    b"" if self.keep_alive else _CLOSE,
                    b"\r\n",
                    content,
                )
            )
        )
        if not self.keep_alive:
            self.transport.close()
        self.on_response()


_STOPPING = b'{"error_code":503,"error_desc":"the server is shutting down; retry"}'
