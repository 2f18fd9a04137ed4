"""The gateway's core alone: a chat round trip through routes -> handlers -> store -> hub -> agent turn, in
one process, with no sockets (each socket is our ``WebSocketLike`` seam, which takes a frame at once).

A benchmark, not a test. Run from the repository root::

    .venv/bin/python bench/hotpath.py                       # 1,000 conversations over 20 keys
    .venv/bin/python bench/hotpath.py --conversations 10 --rounds 5
    PYTHONPATH=../main/src .venv/bin/python bench/hotpath.py  # another checkout's code, for an A/B

What ``bench/floor.py`` measures minus the transport (uvicorn, the socket writes, the client processes):
the part of a round trip that the store, the hub, the handlers and the agent runner cost. Each conversation
is driven in a closed loop, as the route does (one ``serve_frame`` per client frame, then the wait for the
``bot_message``). The gateway is the real one (``Gateway.build``: SQLite in a temporary folder, the demo
agent, metrics on, fair admission at its defaults unless ``--in-flight-per-key`` says otherwise, rate limits
off). For each round: round trips/s, the
process's CPU per trip (all threads), SQLite commits per trip, context switches per trip, p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
import time
from typing import Any

from captivate_chat_api.server.connection import Connection
from captivate_chat_api.server.gateway import Gateway
from captivate_chat_api.server.routes.ws import serve_frame
from captivate_chat_api.server.settings import Settings


class Socket:
    """The WebSocket seam: takes every frame at once; tells the driver when the ``bot_message`` came."""

    def __init__(self) -> None:
        self.answered: asyncio.Future[None] | None = None

    async def send_text(self, text: str) -> None:
        if '"bot_message"' in text[:40] and self.answered is not None and not self.answered.done():
            self.answered.set_result(None)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


def usage() -> tuple[float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nvcsw + r.ru_nivcsw


def envelope(event_type: str, payload: dict[str, Any], socket_id: str) -> str:
    return json.dumps(
        {
            "action": "sendMessage",
            "event": {"event_type": event_type, "event_payload": payload, "socket_id": socket_id},
        }
    )


def bench_settings(keys: list[str], prefix: str, **more: Any) -> Settings:
    """The gateway of the in-process benchmarks: SQLite in a fresh temporary folder, no rate limits, room
    for every socket and frame (``more``: other settings)."""
    folder = tempfile.mkdtemp(prefix=prefix)
    return Settings(
        database=f"sqlite:///{folder}/hot.db",
        api_keys=keys,
        rate_per_socket=0,
        rate_per_key=0,
        starts_per_minute_per_key=0,
        send_queue_frames=10_000,
        max_sockets_per_key=1_000_000,
        **more,
    )


async def open_conversation(gateway: Gateway, key: str, index: int) -> tuple[Connection, Socket, str]:
    """A socket of ``key``'s bound to a conversation it started (user ``u{index}``)."""
    channel = await gateway.auth.channel(key)
    assert channel is not None
    socket = Socket()
    connection = Connection(socket, channel, gateway.settings.send_queue_frames)
    gateway.hub.add(connection)
    start = envelope("conversation_start", {"userId": f"u{index}"}, connection.socket_id)
    await serve_frame(gateway, connection, key, start)
    return connection, socket, next(iter(connection.conversations))


async def main(args: argparse.Namespace) -> None:
    keys = [f"cck_bench_{i:02d}_{'x' * 24}" for i in range(args.keys)]
    settings = bench_settings(keys, "hotpath-", in_flight_per_key=args.in_flight_per_key)
    gateway = Gateway.build(settings)
    await gateway.start()
    loop = asyncio.get_running_loop()
    conversations = []
    for index in range(args.conversations):
        key = keys[index % len(keys)]
        conversations.append((key, *await open_conversation(gateway, key, index)))
    running = True
    trips = 0
    latencies: list[float] = []

    async def drive(key: str, connection: Connection, socket: Socket, conversation_id: str) -> None:
        nonlocal trips
        n = 0
        while running:
            n += 1
            socket.answered = loop.create_future()
            began = time.perf_counter()
            payload = {
                "conversation_id": conversation_id,
                "content": {"type": "text", "text": f"m{n}"},
                "client_msg_id": f"c{n}",
            }
            await serve_frame(
                gateway, connection, key, envelope("user_message", payload, connection.socket_id)
            )
            await socket.answered
            latencies.append(time.perf_counter() - began)
            trips += 1

    tasks = [asyncio.create_task(drive(*c)) for c in conversations]
    await asyncio.sleep(args.warmup)
    writer = gateway.store._writer  # type: ignore[attr-defined]
    print(
        f"{args.conversations} conversations over {args.keys} keys, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    for _ in range(args.rounds):
        trips0, (cpu0, switches0), commits0 = trips, usage(), writer.batches
        latencies.clear()
        await asyncio.sleep(args.seconds)
        n = max(1, trips - trips0)
        cpu, switches = usage()
        p50 = sorted(latencies)[len(latencies) // 2] * 1000 if latencies else float("nan")
        print(
            f"  {n / args.seconds:7.0f} rt/s  CPU {(cpu - cpu0) * 1000 / n:.3f} ms/trip"
            f"  commits {(writer.batches - commits0) / n:.2f}/trip  cs {(switches - switches0) / n:.2f}/trip"
            f"  p50 {p50:.2f} ms",
            flush=True,
        )
    running = False
    await asyncio.wait(tasks, timeout=10)
    await gateway.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument(
        "--keys", type=int, default=20, help="API keys (tenants) the conversations spread over"
    )
    parser.add_argument(
        "--in-flight-per-key", type=int, default=8, help="fair admission's per-key share (0: admission off)"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0)
    arguments = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(arguments))
    except ImportError:
        asyncio.run(main(arguments))
