"""Connections that cannot starve the gateway: a header/handshake deadline, bounded request heads, a cap on
open connections below the file-descriptor limit (a clear JSON 503 over it), and the fd limit raised.

uvicorn bounds the idle time between keep-alive requests, not the time a client takes to send a request's
head or to finish a WebSocket handshake: a slowloris client (a header byte a second) or a handshake that
never completes would pin a file descriptor for as long as it likes. :func:`protocol_class` is uvicorn's
httptools protocol with those bounds added.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from .client_socket import ClientSocket, ClientSockets, SocketServer
from .fastpath import HotPost, HotPosts, has_nul
from .routes.http import MESSAGE_PATH
from .routes.ws import SOCKET_PATH

log = logging.getLogger("captivate_chat_api.server")

FD_RESERVE = 64
"""Descriptors kept free under the limit for the store, the broker, agents' HTTP calls and log files."""

WS_MAX_LINE = 8000
WS_MAX_HEADERS = 120
"""A WebSocket handshake's head must fit the websockets library's limits (8,192 bytes a line, 128 headers)."""

_raised: tuple[int, int] | None = None


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit (once); log both. Returns (soft, hard)."""
    global _raised
    if _raised is not None:
        return _raised
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        _raised = (1024, 1024)
        return _raised
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning(
                "file descriptor limit: could not raise the soft limit %d to %d: %s", soft, target, exc
            )
            target = soft
    log.info(
        "file descriptor limit: soft %d (was %d), hard %s",
        target,
        soft,
        "unlimited" if hard == resource.RLIM_INFINITY else hard,
    )
    _raised = (target, hard)
    return _raised


def connection_cap(configured: int, soft_limit: int) -> int:
    """Open connections allowed: ``configured`` (0: automatic), never above the fd limit minus a reserve."""
    ceiling = max(16, soft_limit - max(FD_RESERVE, soft_limit // 20))
    return min(configured, ceiling) if configured > 0 else ceiling


def _status_bytes(status: int, reason: str, desc: str, retry_after: int | None = None) -> bytes:
    body = json.dumps({"error_code": status, "error_desc": desc}).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def websocket_accepted(protocol: object, http_protocol: object) -> bool:
    """True when the connection was handed to a WebSocket protocol whose handshake is complete (uvicorn's
    sans-I/O protocol says ``handshake_complete``, its legacy one ``handshake_completed_event``)."""
    if protocol is http_protocol:
        return False
    complete = getattr(protocol, "handshake_complete", None)
    if isinstance(complete, bool):
        return complete
    event = getattr(protocol, "handshake_completed_event", None)
    return bool(event is not None and event.is_set())


class JoinedWrites:
    """An HTTP connection's transport that joins the writes of one loop iteration into one: uvicorn writes a
    response's head and its body separately (two syscalls, two packets with ``TCP_NODELAY``); a chat
    answer is small, and one write of both halves costs the server and the client half as much. The
    writes go out in order from a ``call_soon`` in the same iteration; closing writes them first."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def write_now(self, data: bytes) -> None:
        """One write that is whole already (a :class:`.fastpath.HotPost` answer): out at once, after what
        is pending."""
        if self._pending:
            self.flush()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:  # is_closing, pause_reading, get_extra_info, set_protocol ...
        return getattr(self._transport, name)


def protocol_class(
    *,
    header_timeout: float,
    max_connections: int,
    max_head_bytes: int,
    client_sockets: ClientSockets | None = None,
    hot_posts: HotPosts | None = None,
) -> type[asyncio.Protocol] | None:
    """uvicorn's httptools protocol with the bounds above; None when httptools is not installed (uvicorn's
    h11 protocol is used then, with its own limit on a request head's size but no header deadline).
    With ``client_sockets``, an upgrade of ``/dev`` is handed to :class:`.client_socket.ClientSocket`
    (every other WebSocket to uvicorn's protocol, and the ASGI app). With ``hot_posts``, a client-event
    POST is served by a :class:`.fastpath.HotPost` in place of uvicorn's ASGI request cycle (every other
    request by the ASGI app)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
        return None
    full = _status_bytes(
        503, "Service Unavailable", f"too many open connections (limit {max_connections}); retry", 1
    )
    slow = _status_bytes(
        408, "Request Timeout", f"request head or handshake not complete within {header_timeout:g} s"
    )
    large = _status_bytes(
        431,
        "Request Header Fields Too Large",
        f"request head too large (limit {max_head_bytes} bytes; a WebSocket handshake: {WS_MAX_LINE} bytes a line)",
    )

    malformed = _status_bytes(400, "Bad Request", "invalid HTTP request")
    servers: dict[int, SocketServer] = {}  # one per uvicorn server (its ServerState)
    hot_url = MESSAGE_PATH.encode()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        # Both deadlines (the head's, uvicorn's keep-alive) are lazy: a request moves the time its timer
        # checks, and the timer is set again only when it fires early (once per timeout, not per request:
        # a timer set and cancelled for each of them cost more than the parse of its head).
        _deadline: asyncio.TimerHandle | None = None
        _head_due: float | None = None
        """When the head (or WebSocket handshake) being timed must be complete; None: nothing is timed."""
        _idle_due: float | None = None
        """When the connection, idle between requests, is closed (uvicorn's keep-alive timeout); None: busy."""
        _raw: asyncio.Transport
        _head_bytes = 0
        _in_head = True

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(full)
                transport.close()
                return
            self._raw = transport
            self.transport = JoinedWrites(transport, self.loop)  # type: ignore[assignment]
            self._arm()

        def _arm(self) -> None:
            self._in_head, self._head_bytes = True, 0
            self._head_due = due = self.loop.time() + header_timeout
            if self._deadline is None:
                self._deadline = self.loop.call_at(due, self._expired)

        def _disarm(self) -> None:
            self._head_due = None  # the timer, if set, finds nothing to time

        def _cancel(self) -> None:
            self._head_due = None
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            due = self._head_due
            if due is None:
                return
            if due > self.loop.time():  # set for an earlier head: this one is due later
                self._deadline = self.loop.call_at(due, self._expired)
                return
            self._head_due = None
            if websocket_accepted(self.transport.get_protocol(), self):
                return  # a WebSocket that was accepted in time
            if not self.transport.is_closing():
                if self.transport.get_protocol() is self:
                    self.transport.write(slow)
                self.transport.close()

        def on_response_complete(self) -> None:
            # uvicorn's, with its keep-alive timer lazy (see above)
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._idle_due = None
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
                return
            self._idle_due = due = self.loop.time() + self.timeout_keep_alive
            if self.timeout_keep_alive_task is None:
                self.timeout_keep_alive_task = self.loop.call_at(due, self.timeout_keep_alive_handler)

        def _unset_keepalive_if_required(self) -> None:
            self._idle_due = None  # bytes came: not idle (the timer, if set, finds so)

        def timeout_keep_alive_handler(self) -> None:
            self.timeout_keep_alive_task = None
            due = self._idle_due
            if due is None:
                return
            if due > self.loop.time():
                self.timeout_keep_alive_task = self.loop.call_at(due, self.timeout_keep_alive_handler)
                return
            super().timeout_keep_alive_handler()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_head and not self.transport.is_closing():  # the head is still incomplete
                self._head_bytes += len(data)
                if self._head_bytes > max_head_bytes:
                    self._disarm()
                    self.transport.write(large)
                    self.transport.close()

        def send_400_response(self, msg: str) -> None:
            # a request the parser refuses: uvicorn answers it in plain text; ours are JSON
            self.transport.write(malformed)
            self.transport.close()

        def on_message_begin(self) -> None:
            # A new request (the first, or the next on a kept-alive connection): its head is timed and
            # sized from its first byte. Body bytes of a request answered early (a 413) are not head bytes.
            if not self._in_head or self._head_due is None:
                self._arm()
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            if hot_posts is not None and self.url == hot_url and self._hot_post(hot_posts):
                self._disarm()
                return
            if not (self.parser.should_upgrade() and self._should_upgrade()):
                self._disarm()  # a WebSocket keeps its deadline until the app accepts it
            super().on_headers_complete()

        def _hot_post(self, posts: HotPosts) -> bool:
            """Start (or queue behind the request before it) a client-event POST as a
            :class:`.fastpath.HotPost`; False: not one (a browser's, a ``100-continue``, before the
            gateway started, ...), for the ASGI app."""
            parser = self.parser
            if (
                parser.get_method() != b"POST"
                or self.expect_100_continue
                or self.root_path
                or parser.should_upgrade()
            ):
                return False
            gateway = posts.gateway()
            if gateway is None:
                return False
            keys: list[str] = []
            declared = None
            for name, value in self.headers:
                if name == b"x-api-key":
                    keys.append(value.decode("latin-1"))
                elif name == b"content-length":
                    declared = value
                elif name == b"origin":
                    return False  # down the stack, for its CORS headers
            version = parser.get_http_version()
            scope: Any = self.scope
            scope["method"] = "POST"
            if version != "1.1":
                scope["http_version"] = version
            scope["path"] = MESSAGE_PATH
            scope["raw_path"] = self.url
            scope["query_string"] = b""
            limit = gateway.settings.max_body_bytes
            cycle = HotPost(
                posts,
                self,
                scope,
                keys,
                limit,
                keep_alive=version != "1.0" and parser.should_keep_alive(),
                too_large=declared is not None and declared.isdigit() and int(declared) > limit,
            )
            existing = self.cycle
            self.cycle = cycle  # type: ignore[assignment]
            if existing is None or existing.response_complete:
                self._start_asgi_task(cycle, None)  # type: ignore[arg-type]
            else:  # pipelined: it starts once the request before it is answered, as uvicorn's would
                self.flow.pause_reading()
                self.pipeline.appendleft((cycle, None))  # type: ignore[arg-type]
            return True

        def on_body(self, body: bytes) -> None:
            cycle: Any = self.cycle
            if type(cycle) is HotPost:
                cycle.feed(body)
            else:
                super().on_body(body)

        def on_message_complete(self) -> None:
            cycle: Any = self.cycle
            if type(cycle) is HotPost:
                cycle.complete()
            else:
                super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            # A WebSocket writes one frame at a time and gets the transport itself (see JoinedWrites).
            if isinstance(self.transport, JoinedWrites):
                self.transport.flush()
                self.transport = self._raw
            # The WebSocket library reads the head again with its own limits (8 KiB a line, 128 headers) and
            # answers nothing when they are exceeded: refuse such a head here, with a status.
            lines = [self.url, *(name + value for name, value in self.headers)]
            if len(self.headers) > WS_MAX_HEADERS or max(map(len, lines)) > WS_MAX_LINE:
                self._disarm()
                self.transport.write(large)
                self.transport.close()
                return
            if client_sockets is not None and self._to_client_socket(client_sockets):
                return
            super().handle_websocket_upgrade()

        def _to_client_socket(self, sockets: ClientSockets) -> bool:
            """Hand an upgrade of ``/dev`` to a :class:`.client_socket.ClientSocket` (False: not one)."""
            from urllib.parse import unquote

            import httptools

            url = httptools.parse_url(self.url)
            query = url.query or b""
            if (
                unquote(url.path.decode("ascii")) != SOCKET_PATH
                or self.root_path
                or has_nul({"query_string": query})
                or sockets.gateway() is None
            ):
                return False  # down the ASGI path (RefuseNul answers a NUL there)
            scope: Any = self.scope
            key = id(self.server_state)
            server = servers.get(key)
            if server is None or server.server_state is not self.server_state:
                server = servers[key] = SocketServer.of(sockets, self.config, self.server_state)
            self.connections.discard(self)
            deadline = self._head_due
            self._cancel()  # the socket keeps the deadline until it is accepted
            head = [scope["method"].encode(), b" ", self.url, b" HTTP/1.1\r\n"]
            origin = None
            for name, value in scope["headers"]:
                head += [name, b": ", value, b"\r\n"]
                if name == b"origin" and origin is None:
                    origin = value.decode("latin-1")
            head.append(b"\r\n")
            transport = self.transport
            self.parser = None  # type: ignore[assignment]  # (it refers back to this protocol: freed now)
            ClientSocket(server, transport).upgrade(b"".join(head), origin, query, deadline)
            return True

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            if self.timeout_keep_alive_task is not None:
                self.timeout_keep_alive_task.cancel()
                self.timeout_keep_alive_task = None
            super().connection_lost(exc)

    return GuardedHttpToolsProtocol


def uvicorn_options(
    settings: Any, client_sockets: ClientSockets | None = None, hot_posts: HotPosts | None = None
) -> dict[str, Any]:
    """The uvicorn ``Config`` options for the bounds in ``settings`` (raises the fd limit first), the
    ``/dev`` sockets served by :class:`.client_socket.ClientSocket` and the client-event POSTs by
    :class:`.fastpath.HotPost`."""
    soft, _ = raise_fd_limit()
    cap = connection_cap(settings.max_connections, soft)
    options: dict[str, Any] = {
        "timeout_keep_alive": settings.keep_alive_timeout,  # uvicorn takes a float as well
        "h11_max_incomplete_event_size": settings.max_head_bytes,
    }
    protocol = protocol_class(
        header_timeout=settings.header_timeout,
        max_connections=cap,
        max_head_bytes=settings.max_head_bytes,
        client_sockets=client_sockets,
        hot_posts=hot_posts,
    )
    if protocol is not None:
        options["http"] = protocol
    else:  # pragma: no cover
        options["limit_concurrency"] = cap
    log.debug(
        "open connections capped at %d; request heads within %g s and %d bytes",
        cap,
        settings.header_timeout,
        settings.max_head_bytes,
    )
    return options


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc keeps freed arenas otherwise)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


async def trim_after_load(count: Any, interval: float = 5.0, drop: int = 500) -> None:
    """When the open sockets fell by ``drop`` or more since the last peak, release memory (once per fall).
    ``count()`` gives the number of open sockets."""
    peak = 0
    while True:
        await asyncio.sleep(interval)
        now = count()
        if now > peak:
            peak = now
        elif peak - now >= drop:
            await asyncio.get_running_loop().run_in_executor(None, release_memory)
            log.debug("released memory after %d sockets closed", peak - now)
            peak = now
