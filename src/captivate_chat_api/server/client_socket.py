"""The ``/dev`` WebSocket served straight from its transport: websockets' sans-I/O protocol, no ASGI.

uvicorn runs every WebSocket as an ASGI task with a receive queue, events, a scope and the handshake's
headers, kept for the socket's whole life. The client socket needs none of that: its upgrade is checked once
(:func:`.routes.ws.admit`: origin, apiKey, the store's channel, the per-key cap), each frame goes to
:func:`.routes.ws.serve_frame` as it arrives (in order: one at a time, reading paused while one waits), and
frames out are written to the transport, those of one loop iteration in one write. An idle socket is this
object, websockets' protocol state and its :class:`.connection.Connection`: no task, queue or event.

:class:`.connections.protocol_class` hands it the upgrades of ``/dev``; every other WebSocket (and the
in-process ASGI app) keeps the ASGI path, which shares :mod:`.routes.ws` with this one. What the ASGI path
does is done here too: the handshake deadline, the 101's headers (uvicorn's, ``x-captivate-worker``), a
refusal's JSON body and its error count, the permessage-deflate setting, keepalive pings, close codes,
uvicorn's log lines (redacted like every record) and its graceful shutdown.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, SEND_EOF
from websockets.server import ServerProtocol

from .fastjson import dumps
from .routes.ws import Admission, admit, gone, opened, serve_frame

if TYPE_CHECKING:
    from .connection import Connection
    from .gateway import Gateway

log = logging.getLogger("captivate_chat_api.server.ws")
server_log = logging.getLogger("uvicorn.error")
"""uvicorn's WebSocket protocols log the handshake here (and websockets' own records go here too)."""

CLOSE_TIMEOUT = 10.0
"""A close frame sent, the peer has this long to answer it before the TCP connection is closed."""


@dataclass(frozen=True)
class ClientSockets:
    """The ``/dev`` sockets of one server: given to :func:`.connections.protocol_class`."""

    gateway: Callable[[], Gateway | None]
    """The gateway, once the app's lifespan has made it (None before: the ASGI path serves then)."""
    handshake_headers: tuple[tuple[str, str], ...] = ()
    """More headers for the 101 (``x-captivate-worker``)."""


@dataclass
class SocketServer:
    """What every client socket of one server shares (one object, so that a socket holds only its own state)."""

    gateway: Callable[[], Gateway | None]
    server_state: Any
    """uvicorn's ``ServerState``: its open connections and tasks (shutdown waits on both), default headers."""
    max_size: int | None
    deflate: bool
    ping_interval: float | None
    ping_timeout: float | None
    handshake_headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, sockets: ClientSockets, config: Any, server_state: Any) -> SocketServer:
        """From uvicorn's ``Config`` (frame size, permessage-deflate, keepalive) and ``ServerState``."""
        return cls(
            sockets.gateway,
            server_state,
            config.ws_max_size,
            bool(config.ws_per_message_deflate),
            config.ws_ping_interval,
            config.ws_ping_timeout,
            list(sockets.handshake_headers),
        )

    def extensions(self) -> list[ServerPerMessageDeflateFactory] | None:
        if not self.deflate:
            return None
        # uvicorn's sans-I/O settings: 4 KiB windows, a small compressor state
        return [
            ServerPerMessageDeflateFactory(
                server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
            )
        ]


_SHORT = [bytes((0x81, size)) for size in range(126)]
_MEDIUM = struct.Struct("!BBH").pack


def _text_header(size: int) -> bytes:
    """The head of an unmasked, final text frame of ``size`` bytes (RFC 6455 section 5.2)."""
    if size < 126:
        return _SHORT[size]
    if size < 65536:
        return _MEDIUM(0x81, 126, size)
    return struct.pack("!BBQ", 0x81, 127, size)


class ClientSocket(asyncio.Protocol):
    """One ``/dev`` WebSocket, from its upgrade request (already parsed by the HTTP protocol) to its close."""

    __slots__ = (
        "_accepted",
        "_api_key",
        "_connection",
        "_deadline",
        "_fragments",
        "_fragments_text",
        "_inbox",
        "_keepalive",
        "_ping",
        "_protocol",
        "_reading_paused",
        "_server",
        "_serving",
        "_timer",
        "_transport",
        "_writable",
    )

    def __init__(self, server: SocketServer, transport: asyncio.Transport) -> None:
        self._server = server
        self._transport = transport
        self._protocol = ServerProtocol(
            extensions=server.extensions(), max_size=server.max_size, logger=server_log
        )
        self._connection: Connection | None = None
        self._api_key = ""
        self._accepted = False
        self._deadline: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        """The keepalive's next ping or pong deadline; after a close frame, the close timeout."""
        self._ping: bytes | None = None
        self._keepalive = False
        self._fragments: list[bytes] | None = None
        self._fragments_text = False
        self._inbox: deque[bytes | str] | None = None
        self._serving = False
        self._reading_paused = False
        self._writable: asyncio.Future[None] | None = None

    # -- the upgrade -------------------------------------------------------------------------------------

    def upgrade(self, head: bytes, origin: str | None, query: bytes, deadline: float | None) -> None:
        """Take over the connection from the HTTP protocol: ``head`` is the upgrade request as received (the
        websockets parser reads it again, with its own limits), ``deadline`` the loop time by which it
        must be accepted (or None)."""
        self._server.server_state.connections.add(self)
        transport = self._transport
        transport.set_protocol(self)
        transport.pause_reading()  # nothing is read before the 101: frames would be parsed as the request
        protocol = self._protocol
        protocol.receive_data(head)
        request = next((e for e in protocol.events_received() if isinstance(e, Request)), None)
        if request is None:  # the head did not parse: websockets wrote its answer
            self._write_pending()
            transport.close()
            return
        response = protocol.accept(request)
        if response.status_code != 101:  # not a valid WebSocket handshake (websockets says why)
            protocol.send_response(response)
            self._write_pending()
            transport.close()
            return
        gateway = self._server.gateway()
        assert gateway is not None  # the protocol class hands over upgrades only once the app has started
        if deadline is not None:
            self._deadline = asyncio.get_running_loop().call_at(deadline, self._expired)
        keys = [
            value
            for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            if name == "apiKey"
        ]
        log_path = quote(request.path.partition("?")[0]) + ("?" + query.decode("ascii") if query else "")
        self._task(self._admit(gateway, response, origin, keys, log_path))

    def _task(self, coro: Coroutine[Any, Any, None]) -> None:
        """A task uvicorn's shutdown waits for (a store call, e.g. asyncpg's, needs to run in a task)."""
        tasks = self._server.server_state.tasks
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _admit(
        self, gateway: Gateway, response: Response, origin: str | None, keys: list[str], log_path: str
    ) -> None:
        try:
            admission = await admit(gateway, origin, keys)
        except Exception:  # noqa: BLE001 -- as uvicorn answers an ASGI app that raised before accepting
            server_log.exception("Exception in ASGI application\n")
            self._refuse(500, "Internal Server Error", log_path, gateway, count=False)
            return
        if self._transport.is_closing():  # the deadline passed, or the peer left, meanwhile
            return
        if admission.channel is None:
            self._refuse(admission.status, admission.desc, log_path, gateway)
            return
        self._accept(gateway, response, admission, log_path)

    def _accept(self, gateway: Gateway, response: Response, admission: Admission, log_path: str) -> None:
        self._disarm()
        server_log.info('%s - "WebSocket %s" [accepted]', self._peer(), log_path)
        del response.headers["Date"]  # uvicorn's own Date (and Server) follow, as its protocols send them
        response.headers.update(
            [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in self._server.server_state.default_headers
            ]
            + self._server.handshake_headers
        )
        self._protocol.send_response(response)
        self._write_pending()
        self._accepted = True
        self._api_key = admission.api_key
        self._connection = opened(gateway, self, admission)
        self._start_keepalive()
        self._transport.resume_reading()

    def _refuse(self, status: int, desc: str, log_path: str, gateway: Gateway, *, count: bool = True) -> None:
        """Answer the upgrade with an HTTP status and a JSON body (never a 101), then close."""
        self._disarm()
        if self._transport.is_closing():
            return
        server_log.info('%s - "WebSocket %s" %d', self._peer(), log_path, status)
        if count and status >= 400:
            gateway.metrics.error("ws", status)
        body = dumps({"error_code": status, "error_desc": desc}).encode()
        headers = Headers(
            [
                ("content-length", str(len(body))),
                ("content-type", "application/json"),
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Connection", "close"),
            ]
        )
        self._protocol.send_response(Response(status, HTTPStatus(status).phrase, headers, body))
        self._write_pending()
        self._transport.close()

    def _expired(self) -> None:
        """The handshake deadline: an upgrade not accepted by now is cut (as the HTTP protocol cuts a head)."""
        self._deadline = None
        if not self._accepted:
            self._transport.close()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _peer(self) -> str:
        peer = self._transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if peer else ""

    # -- frames in ---------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        protocol = self._protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if not isinstance(event, Frame):
                continue
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if event.fin:
                    self._message(opcode, bytes(event.data))
                else:
                    self._fragments = [bytes(event.data)]
                    self._fragments_text = opcode is Opcode.TEXT
            elif opcode is Opcode.CONT and self._fragments is not None:
                self._fragments.append(bytes(event.data))
                if event.fin:
                    parts, self._fragments = self._fragments, None
                    self._message(Opcode.TEXT if self._fragments_text else Opcode.BINARY, b"".join(parts))
            elif opcode is Opcode.PONG:
                self._pong(bytes(event.data))
            # a ping is answered, a close frame echoed, by the protocol (written below)
        self._write_pending()

    def _message(self, opcode: Opcode, data: bytes) -> None:
        if self._connection is None or not self._connection.accepting:
            return  # closing: the peer's close frame is what is awaited
        message: bytes | str = data
        if opcode is Opcode.TEXT:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self._protocol.fail(1007, "invalid UTF-8 in a text frame")
                return
        if self._serving:  # one frame at a time, in order; the peer waits meanwhile
            if self._inbox is None:
                self._inbox = deque()
            self._inbox.append(message)
            if not self._reading_paused:
                self._reading_paused = True
                self._transport.pause_reading()
            return
        self._serve(message)

    def _serve(self, message: bytes | str) -> None:
        self._serving = True
        self._task(self._serve_all(message))

    async def _serve_all(self, message: bytes | str) -> None:
        """Serve frames one at a time, in order, until none waits; then read again."""
        connection = self._connection
        gateway = self._server.gateway()
        assert connection is not None and gateway is not None
        try:
            while True:
                try:
                    await serve_frame(gateway, connection, self._api_key, message)
                except Exception:
                    log.exception("unexpected error serving a WebSocket frame")
                if not self._inbox or self._connection is None:
                    break
                message = self._inbox.popleft()
        finally:
            self._serving = False
            self._inbox = None
            if self._reading_paused and not self._transport.is_closing():
                self._reading_paused = False
                self._transport.resume_reading()

    # -- frames out (the WebSocketLike seam of Connection) ------------------------------------------------

    def try_send(self, text: str) -> bool:
        """Write a text frame now, unless the transport is paused (False: then ``await send_text``)."""
        if self._writable is not None:
            return False
        self._send(text)
        return True

    async def send_text(self, data: str) -> None:
        while self._writable is not None:
            await self._writable
        self._send(data)

    def _send(self, text: str) -> None:
        transport = self._transport
        if transport.is_closing():
            raise ConnectionResetError("the WebSocket is closed")
        payload = text.encode()
        protocol = self._protocol
        if protocol.extensions or protocol.state is not OPEN:  # compressed (or refused: not open)
            protocol.send_text(payload)
            self._write_pending()
        else:  # straight to the transport, as _write does (it is open: checked above)
            transport.write(_text_header(len(payload)) + payload)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Send a close frame (the peer's answer, or :data:`CLOSE_TIMEOUT`, closes the connection)."""
        protocol = self._protocol
        if protocol.state is not OPEN or self._transport.is_closing():
            return
        self._stop_keepalive()
        protocol.send_close(code, reason or "")
        self._write_pending()
        self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._transport.close)

    def _write_pending(self) -> None:
        """Write what the protocol has to send (a handshake answer, a pong, a close frame, its EOF)."""
        for data in self._protocol.data_to_send():
            if data is SEND_EOF or not data:
                self._transport.close()
                return
            self._write(data)

    def _write(self, data: bytes) -> None:
        # Straight to the transport (one syscall a frame): joining the frames of one loop iteration into one
        # write at its end cost more than it saved (a loop callback per write, and the frame waits for the
        # next iteration; bench/floor.py, docs/benchmarks.md).
        if not self._transport.is_closing():
            self._transport.write(data)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # -- keepalive ---------------------------------------------------------------------------------------

    def _start_keepalive(self) -> None:
        interval = self._server.ping_interval
        if interval:
            self._keepalive = True
            self._timer = asyncio.get_running_loop().call_later(interval, self._send_ping)

    def _stop_keepalive(self) -> None:
        self._keepalive = False
        self._ping = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _send_ping(self) -> None:
        self._timer = None
        if self._protocol.state is not OPEN or self._transport.is_closing():
            return
        self._ping = os.urandom(4)
        self._protocol.send_ping(self._ping)
        self._write_pending()
        loop = asyncio.get_running_loop()
        timeout, interval = self._server.ping_timeout, self._server.ping_interval or 0
        if timeout:
            self._timer = loop.call_later(timeout, self._ping_timed_out)
        else:
            self._timer = loop.call_later(interval, self._send_ping)

    def _pong(self, data: bytes) -> None:
        if self._ping is None or data != self._ping or not self._keepalive:
            return  # unsolicited, or stale
        self._ping = None
        if self._timer is not None and self._server.ping_timeout:
            self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(
                self._server.ping_interval or 0, self._send_ping
            )

    def _ping_timed_out(self) -> None:
        self._timer = None
        self._ping = None
        if self._protocol.state is not OPEN or self._transport.is_closing():
            return
        self._protocol.fail(1011, "keepalive ping timeout")
        self._write_pending()
        self._transport.close()

    # -- the end -----------------------------------------------------------------------------------------

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself (then connection_lost)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.server_state.connections.discard(self)
        self._disarm()
        self._stop_keepalive()
        self._inbox = None
        self.resume_writing()  # a writer waiting on a paused transport finds it closed
        connection, self._connection = self._connection, None
        if connection is not None:
            gateway = self._server.gateway()
            if gateway is not None:
                gone(gateway, connection)
            connection.lost()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown (after the gateway sent its 1001s): as its own WebSocket protocols do."""
        self._stop_keepalive()
        transport = self._transport
        if transport.is_closing():
            return
        if not self._accepted:
            self._disarm()
            self._protocol.send_response(self._protocol.reject(500, "Internal Server Error"))
        elif self._protocol.state is OPEN:
            self._protocol.send_close(1012)
        self._write_pending()
        transport.close()
