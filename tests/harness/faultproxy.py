"""An asyncio TCP proxy on loopback that injects faults between a client and the gateway.

- ``cut()``: close every connection now (a network cut; both sides see a reset/EOF).
- ``black_hole = True``: keep connections open but forward nothing either way (a half-open link).
- ``lose_responses(n)``: for the next ``n`` HTTP requests, let the request reach the gateway, then close
  the client side before any byte of the response is forwarded (the acknowledgement is lost).
- ``loss_rate``: the same for each HTTP POST with this probability, drawn once per request from ``rng``.
- ``delay``: seconds added before forwarding each chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from harness.tcp import LoopbackServer


class FaultProxy(LoopbackServer):
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__()
        self.upstream = (upstream_host, upstream_port)
        self.black_hole = False
        self.delay = 0.0
        self._lose = 0
        self.loss_rate = 0.0
        self.rng = random.Random()
        self.lost = 0
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    def _closing(self) -> None:
        self.cut()

    def lose_responses(self, count: int) -> None:
        self._lose += count

    def cut(self) -> None:
        for client, upstream in list(self._links):
            for writer in (client, upstream):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
        self._links.clear()

    def _take_loss(self, state: dict[str, object]) -> bool:
        if state.pop("lose", False):
            return True
        if self._lose:
            self._lose -= 1
            return True
        return False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        state = {"last_request": b""}
        tasks = [
            asyncio.ensure_future(self._pump(reader, up_writer, link, state, upstream_bound=True)),
            asyncio.ensure_future(self._pump(up_reader, writer, link, state, upstream_bound=False)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)
        self._links.discard(link)
        for w in link:
            with contextlib.suppress(Exception):
                w.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link, state, *, upstream_bound: bool
    ) -> None:  # type: ignore[no-untyped-def]
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            while self.black_hole:
                await asyncio.sleep(0.05)
            if self.delay:
                await asyncio.sleep(self.delay)
            if upstream_bound:
                if chunk[:5] in (b"POST ", b"GET /", b"PUT /", b"DELET"):
                    state["last_request"] = chunk[:5]
                    state["lose"] = chunk[:5] == b"POST " and self.rng.random() < self.loss_rate
            elif state["last_request"] == b"POST " and self._take_loss(state):
                self.lost += 1
                link[0].transport.abort()  # the client loses the response; the gateway did the work
                return
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(Exception):
            writer.write_eof()
