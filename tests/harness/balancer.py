"""A TCP front for several gateway processes, as a load balancer without sticky sessions would be.

Each new connection goes to the first upstream, in the order ``prefer(first_bytes)`` gives, that accepts
it; an upstream that refuses (a killed process) is skipped. Bytes are copied both ways untouched; when
either side closes, so does the other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from harness.tcp import LoopbackServer

Prefer = Callable[[bytes], list[int]]


class Front(LoopbackServer):
    def __init__(self, upstreams: list[tuple[str, int]], prefer: Prefer | None = None) -> None:
        super().__init__()
        self.upstreams = upstreams
        self.prefer = prefer or self._round_robin
        self.routed: list[int] = []
        """The upstream index each connection went to, in order."""
        self._next = 0

    def _round_robin(self, first: bytes) -> list[int]:
        start, self._next = self._next, (self._next + 1) % len(self.upstreams)
        return [(start + i) % len(self.upstreams) for i in range(len(self.upstreams))]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            first = await reader.read(65536)
            if not first:
                return
            for index in self.prefer(first):
                try:
                    up_reader, up_writer = await asyncio.open_connection(*self.upstreams[index])
                except OSError:
                    continue
                self.routed.append(index)
                up_writer.write(first)
                await asyncio.gather(
                    self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
                )
                with contextlib.suppress(Exception):
                    up_writer.transport.abort()
                return
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()  # one side is gone: so is the link


def websocket_to(index: int, others: int) -> Prefer:
    """WebSocket upgrades prefer upstream ``index``, every other request the others; then any alive."""
    order = [index] + [i for i in range(others) if i != index]
    rest = [i for i in range(others) if i != index] + [index]

    def prefer(first: bytes) -> list[int]:
        return order if first.startswith(b"GET /dev") else rest

    return prefer
