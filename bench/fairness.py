"""Noisy neighbour: tenant B's round trip while tenant A floods, with fair admission on and off.

A benchmark, not a test. Run from the repository root::

    .venv/bin/python bench/fairness.py                  # 8 s phases, 64 flooding connections
    .venv/bin/python bench/fairness.py --seconds 15 --flood 128

For each gateway (``captivate-chat serve`` as a subprocess, fresh SQLite file, access log off, default rate
limits, demo agent), one with ``CAPTIVATE_IN_FLIGHT_PER_KEY=0`` (admission off: the old behaviour) and one
with the defaults (fair admission on):

1. **alone**: B sends ``user_message`` events one at a time over HTTP (kept-alive httpx, what the npm
   client does) and times each POST until its 200: p50 / p99;
2. **flood**: A's ``--flood`` connections send as fast as the gateway takes them (429s included: A is at
   its own rate limit) while B measures again.

It prints B's p50/p99 alone and during the flood, the ratio p99(flood) / p99(alone) (the goal: within
2x), and A's accepted messages per second. All on loopback, bounded in time and count. On a shared,
loaded machine the client and the gateway compete for the same cores: compare the two gateways of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

MESSAGE_PATH = "/api/custom-channel/sockets/message"


def envelope(event_type: str, payload: dict[str, object]) -> dict[str, object]:
    return {"action": "sendMessage", "event": {"event_type": event_type, "event_payload": payload}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    def __init__(self, env: dict[str, str]) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="fairness-")
        self.port = free_port()
        self.keys = {name: "cck_bench_" + secrets.token_urlsafe(16) for name in ("A", "B")}
        cmd = [
            sys.executable,
            "-m",
            "captivate_chat_api.cli",
            "serve",
            "--port",
            str(self.port),
            "--database",
            f"sqlite:///{Path(self.dir.name) / 'gw.db'}",
        ]
        for key in self.keys.values():
            cmd += ["--api-key", key]
        full_env = {**os.environ, "CAPTIVATE_ACCESS_LOG": "false", "CAPTIVATE_LOG_LEVEL": "warning", **env}
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self) -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(200):
                try:
                    if (await http.get(self.url + "/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("gateway did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


async def conversation(http: httpx.AsyncClient, user: str) -> str:
    answer = await http.post(MESSAGE_PATH, json=envelope("conversation_start", {"userId": user}))
    answer.raise_for_status()
    return str(answer.json()["conversation_id"])


async def measure_b(gateway: Gateway, seconds: float) -> list[float]:
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"x-api-key": gateway.keys["B"]}, timeout=30
    ) as http:
        cid = await conversation(http, "b")
        samples: list[float] = []
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body = envelope(
                "user_message", {"conversation_id": cid, "content": {"type": "text", "text": f"b{n}"}}
            )
            began = time.perf_counter()
            answer = await http.post(MESSAGE_PATH, json=body)
            samples.append((time.perf_counter() - began) * 1000)
            answer.raise_for_status()
            await asyncio.sleep(0.02)  # B is a normal tenant: ~40 messages a second
        return samples


async def flood_a(gateway: Gateway, connections: int, stop: asyncio.Event, counts: dict[str, int]) -> None:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"x-api-key": gateway.keys["A"]}, timeout=30, limits=limits
    ) as http:
        cids = [await conversation(http, f"a{i}") for i in range(min(connections, 16))]

        async def one(i: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                body = envelope(
                    "user_message",
                    {"conversation_id": cids[i % len(cids)], "content": {"type": "text", "text": f"a{n}"}},
                )
                try:
                    answer = await http.post(MESSAGE_PATH, json=body)
                except httpx.HTTPError:
                    counts["errors"] += 1
                    continue
                counts["ok" if answer.status_code == 200 else str(answer.status_code)] = (
                    counts.get("ok" if answer.status_code == 200 else str(answer.status_code), 0) + 1
                )
                if answer.status_code == 429:
                    await asyncio.sleep(0.005)

        await asyncio.gather(*(one(i) for i in range(connections)))


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(label: str, env: dict[str, str], seconds: float, connections: int) -> dict[str, float]:
    gateway = Gateway(env)
    try:
        await gateway.ready()
        await measure_b(gateway, 1.0)  # warm-up
        alone = await measure_b(gateway, seconds)
        stop = asyncio.Event()
        counts: dict[str, int] = {"ok": 0, "errors": 0}
        flood = asyncio.create_task(flood_a(gateway, connections, stop, counts))
        await asyncio.sleep(1.0)  # the flood is under way
        started = counts["ok"]
        began = time.monotonic()
        during = await measure_b(gateway, seconds)
        rate = (counts["ok"] - started) / (time.monotonic() - began)
        stop.set()
        await asyncio.wait_for(flood, 60)
    finally:
        gateway.stop()
    result = {
        "alone_p50": statistics.median(alone),
        "alone_p99": pct(alone, 0.99),
        "flood_p50": statistics.median(during),
        "flood_p99": pct(during, 0.99),
        "a_rate": rate,
        "samples": float(len(during)),
    }
    result["ratio"] = result["flood_p99"] / result["alone_p99"]
    print(
        f"{label:<22} B alone p50 {result['alone_p50']:6.1f} p99 {result['alone_p99']:6.1f} ms | during A's flood "
        f"p50 {result['flood_p50']:6.1f} p99 {result['flood_p99']:6.1f} ms | p99 ratio {result['ratio']:5.2f}x | "
        f"A accepted {rate:6.0f} msg/s ({int(result['samples'])} B samples)",
        flush=True,
    )
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measured phase")
    parser.add_argument("--flood", type=int, default=64, help="tenant A's concurrent connections")
    parser.add_argument(
        "--per-key", type=int, default=None, help="CAPTIVATE_IN_FLIGHT_PER_KEY (default: the gateway's)"
    )
    parser.add_argument(
        "--total", type=int, default=None, help="CAPTIVATE_IN_FLIGHT_TOTAL (default: the gateway's)"
    )
    args = parser.parse_args()
    env = {}
    if args.per_key is not None:
        env["CAPTIVATE_IN_FLIGHT_PER_KEY"] = str(args.per_key)
    if args.total is not None:
        env["CAPTIVATE_IN_FLIGHT_TOTAL"] = str(args.total)
    off = await run("admission off", {"CAPTIVATE_IN_FLIGHT_PER_KEY": "0"}, args.seconds, args.flood)
    on = await run(f"fair admission {env or '(default)'}", env, args.seconds, args.flood)
    goal = "met" if on["ratio"] <= 2.0 else "NOT met"
    print(
        f"goal (B's p99 during the flood within 2x of alone): {goal}; off {off['ratio']:.2f}x -> on {on['ratio']:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
