"""A WebSocket client that stops reading: a raw socket with a 4 KiB receive buffer, spoken to through the
``websockets`` sans-I/O protocol, that reads only when told to (slow-consumer and shutdown tests)."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.uri import parse_uri


class StalledSocket:
    """A WebSocket client over a raw socket with a 4 KiB receive buffer that reads only when told to."""

    def __init__(self, ws_url: str, key: str) -> None:
        self.uri = f"{ws_url}/dev?apiKey={key}"
        self.protocol = ClientProtocol(parse_uri(self.uri), max_size=None)
        self.frames: list[dict[str, Any]] = []
        self.socket_id = ""

    async def open(self, port: int) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small TCP window
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while not self.frames:
            await self._read_some()
        self.socket_id = self.frames.pop(0)["event"]["event_payload"]["socket_id"]

    def _flush(self) -> None:
        out = self.protocol.data_to_send()
        if out and not self.writer.is_closing():
            self.writer.write(b"".join(out))

    async def _read_some(self) -> bool:
        data = await asyncio.wait_for(self.reader.read(65536), 20)
        if not data:
            self.protocol.receive_eof()
            return False
        self.protocol.receive_data(data)
        for frame in self.protocol.events_received():
            if getattr(frame, "opcode", None) is Opcode.TEXT:
                self.frames.append(json.loads(frame.data))
        self._flush()  # e.g. the reply to a close frame
        return True

    async def read_to_the_end(self) -> int | None:
        """Read what the gateway buffered for it until the connection ends; the close code received."""
        for _ in range(1_000_000):
            if not await self._read_some():
                break
        else:
            raise AssertionError("the stalled socket was never closed")
        self.writer.close()
        return self.protocol.close_code

    def abort(self) -> None:
        self.writer.transport.abort()
