"""A recording tee between chat clients and a gateway, for wire conformance tests.

Clients connect to the recorder as if it were the gateway. Every byte is passed on to the gateway unchanged
(both ways); on the side, what the *clients* sent is parsed into :class:`HttpRequest` records (method,
target, headers, body) and, once a connection is upgraded, into :class:`WsMessage` records (client frames,
unmasked, reassembled, inflated when permessage-deflate is on). Each record is taken before its bytes are
forwarded, so it exists before the gateway can answer it.

Records are labelled with the current step, set with :meth:`WireRecorder.mark` (in-process) or by a
``GET /mark/<step>`` on the control port (from another process, e.g. a Node script).

The recorder runs its own event loop in a thread, so a blocking caller (``subprocess.run``) does not stall it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE = 0x0, 0x1, 0x2, 0x8
SECRET_HEADERS = frozenset({"x-api-key", "authorization", "sec-websocket-key"})


@dataclass(frozen=True, repr=False)
class HttpRequest:
    step: str | None
    connection: int
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """The value of a header (case-insensitive name); repeated headers are joined with ``, ``."""
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def is_websocket_upgrade(self) -> bool:
        return (self.header("upgrade") or "").lower() == "websocket"

    def __repr__(self) -> str:  # never print a key: test reports show reprs
        target = re.sub(r"(?i)(apikey=)[^&]*", r"\1<redacted>", self.target)
        headers = [(n, "<redacted>" if n.lower() in SECRET_HEADERS else v) for n, v in self.headers]
        body = f"<{len(self.body)} bytes>"
        return f"HttpRequest(step={self.step!r}, {self.method} {target}, headers={headers}, body={body})"


@dataclass(frozen=True)
class WsMessage:
    step: str | None
    connection: int
    opcode: int
    data: bytes
    masked: bool


@dataclass(frozen=True)
class ParseFailure:
    step: str | None
    connection: int
    error: str


Record = HttpRequest | WsMessage | ParseFailure


class ClientStream:
    """Parses the bytes one client sent on one connection: HTTP/1.1 requests, then WebSocket frames."""

    def __init__(self, connection: int, emit: Callable[[Callable[[str | None], Record]], None]) -> None:
        self._connection = connection
        self._emit = emit
        self._buffer = bytearray()
        self._websocket = False
        self._deflate = False
        self._inflater = zlib.decompressobj(wbits=-15)
        self._parts: list[bytes] = []
        self._opcode = OP_TEXT
        self._compressed = False
        self._failed = False

    def feed(self, data: bytes) -> None:
        if self._failed:
            return
        self._buffer += data
        try:
            while self._next_frame() if self._websocket else self._next_request():
                pass
        except (ValueError, IndexError, zlib.error) as exc:
            # A parse error must not stop forwarding; the test sees the failure record.
            self._failed = True
            error, connection = f"{type(exc).__name__}: {exc}", self._connection
            self._emit(lambda step: ParseFailure(step, connection, error))

    def _next_request(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = tuple(
            (name.strip(), value.strip()) for name, value in (line.split(":", 1) for line in lines[1:])
        )
        fields = {name.lower(): value for name, value in headers}
        start = end + 4
        if "chunked" in fields.get("transfer-encoding", "").lower():
            decoded = _dechunk(self._buffer, start)
            if decoded is None:
                return False
            body, consumed = decoded
        else:
            length = int(fields.get("content-length", "0"))
            if len(self._buffer) < start + length:
                return False
            body, consumed = bytes(self._buffer[start : start + length]), start + length
        del self._buffer[:consumed]
        connection = self._connection
        self._emit(lambda step: HttpRequest(step, connection, method, target, headers, body))
        if fields.get("upgrade", "").lower() == "websocket":
            # The client sends frames only after the 101; a refused upgrade closes the connection.
            self._websocket = True
            self._deflate = "permessage-deflate" in fields.get("sec-websocket-extensions", "")
        return True

    def _next_frame(self) -> bool:
        data = self._buffer
        if len(data) < 2:
            return False
        fin, rsv1, opcode = data[0] & 0x80, data[0] & 0x40, data[0] & 0x0F
        masked, length, at = bool(data[1] & 0x80), data[1] & 0x7F, 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if len(data) < at + size:
                return False
            length, at = int.from_bytes(data[at : at + size], "big"), at + size
        mask = b""
        if masked:
            if len(data) < at + 4:
                return False
            mask, at = bytes(data[at : at + 4]), at + 4
        if len(data) < at + length:
            return False
        payload = bytes(data[at : at + length])
        del data[: at + length]
        if masked:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        connection = self._connection
        if opcode >= OP_CLOSE:  # control frames are never fragmented nor compressed
            self._emit(lambda step: WsMessage(step, connection, opcode, payload, masked))
            return True
        if opcode != OP_CONTINUATION:
            self._opcode, self._compressed, self._parts = opcode, bool(rsv1) and self._deflate, []
        self._parts.append(payload)
        if fin:
            message = b"".join(self._parts)
            if self._compressed:
                # The inflater keeps its window across messages: right with or without context takeover.
                message = self._inflater.decompress(message + b"\x00\x00\xff\xff")
            kind = self._opcode
            self._emit(lambda step: WsMessage(step, connection, kind, message, masked))
        return True


def _dechunk(buffer: bytearray, at: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``at``: (body, end offset), or None while incomplete."""
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        at = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", at - 2)
            return (bytes(body), trailer_end + 4) if trailer_end >= 0 else None
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


class WireRecorder:
    """A recording TCP tee to ``upstream_port`` on 127.0.0.1; ``start()`` it, point clients at ``port``."""

    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self.host = host
        self.port = 0
        self.control_port = 0
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self._step: str | None = None
        self._connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped: asyncio.Event | None = None
        self.errors: list[str] = []

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def mark(self, step: str) -> None:
        """Label every record from now on with ``step``."""
        with self._lock:
            self._step = step

    def _emit(self, make: Callable[[str | None], Record]) -> None:
        with self._lock:
            self._records.append(make(self._step))

    # lifecycle -------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> WireRecorder:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="wire-recorder", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or not self.port:
            raise RuntimeError(f"the wire recorder did not start: {self.errors}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except OSError as exc:
            self.errors.append(repr(exc))
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        tee = await asyncio.start_server(self._tee, self.host, 0)
        control = await asyncio.start_server(self._control, self.host, 0)
        self.port = tee.sockets[0].getsockname()[1]
        self.control_port = control.sockets[0].getsockname()[1]
        ready.set()
        await self._stopped.wait()
        for server in (tee, control):
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # connections -----------------------------------------------------------------------------------

    async def _tee(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self._connections += 1
            connection = self._connections
        stream = ClientStream(connection, self._emit)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError as exc:
            self.errors.append(f"connection {connection}: cannot reach the gateway: {exc}")
            writer.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, stream.feed),
                self._pump(up_reader, writer, None),
            )
        except asyncio.CancelledError:
            pass  # stop(): end quietly, the task must not finish as cancelled (asyncio would log it)
        finally:
            for w in (writer, up_writer):
                w.close()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                for w in (writer, up_writer):
                    await w.wait_closed()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, observe: Callable[[bytes], None] | None
    ) -> None:
        """Copy until EOF, then half-close the other side; ``observe`` sees each chunk before it is sent."""
        try:
            while data := await source.read(65536):
                if observe is not None:
                    observe(data)
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()
        except (ConnectionError, OSError):
            sink.close()

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """``GET /mark/<step>`` -> 204, after the step is set."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode("latin-1")
            if target.startswith("/mark/"):
                self.mark(unquote(target[len("/mark/") :]))
                writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()
