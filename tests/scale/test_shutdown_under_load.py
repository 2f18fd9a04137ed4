"""A loaded PostgreSQL + Redis gateway stops within its grace period on SIGTERM (issue: some ignored it for
15 s or hung for minutes). Real gateway process, real PostgreSQL schema, our own redis-server; the load is
closed-loop WebSocket senders and HTTP posters, still sending when the signal arrives."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import websockets

from harness.cluster import RedisServer
from harness.gateway import GatewayProcess, new_key
from harness.wire import MESSAGE_PATH, envelope, tls

GRACE = 2.0
CONVERSATIONS = 80
"""Closed-loop clients, half WebSocket, half HTTP: 8x the PostgreSQL pool's 10 connections, so the pool is
busy and turns are in flight at the signal (150, and 3 round trips each before it, proved the same for
~1 CPU-s more)."""
ROUND_TRIPS = 2 * CONVERSATIONS
"""Before the signal: the load is going (two round trips a client on average)."""


async def sender(
    ws_url: str, http_url: str, key: str, n: int, stop: asyncio.Event, counts: list[int]
) -> None:
    try:
        async with websockets.connect(f"{ws_url}/dev?apiKey={key}", ping_interval=None) as ws:
            socket_id = json.loads(await ws.recv())["event"]["event_payload"]["socket_id"]
            client = httpx.AsyncClient(
                base_url=http_url, headers={"x-api-key": key}, timeout=30, verify=tls()
            )
            async with client as http:
                start = await http.post(
                    MESSAGE_PATH, json=envelope("conversation_start", {"userId": f"u{n}"}, socket_id)
                )
                cid = start.json()["conversation_id"]
                i = 0
                while not stop.is_set():
                    i += 1
                    say = envelope(
                        "user_message", {"conversation_id": cid, "content": f"m{i}", "client_msg_id": f"c{i}"}
                    )
                    if n % 2:
                        await http.post(MESSAGE_PATH, json=say)
                    else:
                        await ws.send(json.dumps(say))
                    while '"bot_message"' not in await ws.recv():
                        pass
                    counts[0] += 1
    except (websockets.ConnectionClosed, httpx.HTTPError, OSError, KeyError, json.JSONDecodeError):
        return  # the gateway went away under us: expected


async def test_a_loaded_postgres_redis_gateway_stops_within_its_grace_period(
    postgres_schema: str, redis_server: RedisServer
) -> None:
    key = new_key()
    env = {
        "CAPTIVATE_BROKER": redis_server.url,
        "CAPTIVATE_SHUTDOWN_GRACE_SECONDS": str(GRACE),
        "CAPTIVATE_RATE_PER_SOCKET": "0",
        "CAPTIVATE_RATE_PER_KEY": "0",
        "CAPTIVATE_STARTS_PER_MINUTE_PER_KEY": "0",
        "CAPTIVATE_LOG_LEVEL": "warning",
        "CAPTIVATE_IN_FLIGHT_PER_KEY": "0",
    }
    gateway = await asyncio.to_thread(GatewayProcess(postgres_schema, [key], env=env).start)
    stop = asyncio.Event()
    counts = [0]
    tasks = [
        asyncio.create_task(sender(gateway.ws_url, gateway.http_url, key, n, stop, counts))
        for n in range(CONVERSATIONS)
    ]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while counts[0] < ROUND_TRIPS and loop.time() < deadline:
            await asyncio.sleep(0.1)
        assert counts[0] >= ROUND_TRIPS, f"the load did not get going ({counts[0]} round trips)"
        signalled = time.monotonic()
        code = await asyncio.to_thread(gateway.stop, signal.SIGTERM, 60)  # mid-load: nobody pauses
        took = time.monotonic() - signalled
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if gateway.proc is not None and gateway.proc.poll() is None:
            gateway.kill()
    assert code in (0, -signal.SIGTERM), gateway.logs()[-3000:]
    # the grace period for turns in flight, plus the socket closes' own bound (2 s) and the process's exit
    assert took < GRACE + 6, f"stopped {took:.1f} s after SIGTERM (grace {GRACE:g} s)"
