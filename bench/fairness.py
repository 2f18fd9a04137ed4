"""Noisy neighbour: tenant B's round trip while tenant A floods, with fair admission on and off.

A benchmark, not a test. Run from the repository root::

    .venv/bin/python bench/fairness.py                  # 8 s of each phase, in 3 rounds, 64 flooding connections
    .venv/bin/python bench/fairness.py --seconds 15 --rounds 5 --flood 128
    .venv/bin/python bench/fairness.py --also 'per-key 2:CAPTIVATE_IN_FLIGHT_PER_KEY=2'   # one more gateway
    .venv/bin/python bench/fairness.py --profile /tmp/fair.txt   # + py-spy profile of the fair gateway
    .venv/bin/python bench/fairness.py --postgres       # on PostgreSQL (a schema of its own per gateway)

For each gateway (``captivate-chat serve`` as a subprocess, fresh SQLite file -- or, with ``--postgres``, a
fresh schema on ``CAPTIVATE_BENCH_POSTGRES``, where a unit lends its slot while its commit waits --, access
log off, default rate limits, demo agent), one with ``CAPTIVATE_IN_FLIGHT_PER_KEY=0`` (admission off) and one with the defaults
(fair admission on), ``--rounds`` times in turn (so a drifting machine load hits both phases alike):

1. **alone**: B sends ``user_message`` events one at a time over HTTP (kept-alive httpx, what the npm
   client does), one every 20 ms, and times each POST until its 200;
2. **flood**: A's ``--flood`` connections, in a process of their own (B's timings must not be taken on a
   client loop busy with A's), each send the next POST as soon as the last is answered (raw kept-alive
   HTTP/1.1, pre-encoded: an httpx flood tops out far below the gateway), 429s included, while B measures
   again.

It prints B's p50/p99 alone and during the flood, the ratio p99(flood) / p99(alone) (the goal: within 2x),
A's accepted and refused (429) messages per second, the gateway's CPU (all threads, from /proc) during the
flood, and the noise: the p99 ratio of B alone in the odd rounds against the even rounds, i.e. what the
machine alone does to a p99 (on a shared, loaded machine it can exceed 2x with no flood at all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from benchkit import MESSAGE_PATH, bench_key, cpu_seconds, envelope, gateway

KEYS = ("A", "B")


async def conversation(http: httpx.AsyncClient, user: str) -> str:
    answer = await http.post(MESSAGE_PATH, json=envelope("conversation_start", {"userId": user}))
    answer.raise_for_status()
    return str(answer.json()["conversation_id"])


async def measure_b(url: str, key: str, seconds: float) -> list[float]:
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, timeout=30) as http:
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


async def flood_a(
    url: str,
    key: str,
    connections: int,
    flooding: asyncio.Event,
    stop: asyncio.Event,
    counts: dict[str, int],
    ready: Any = None,
) -> None:
    """A's connections, each sending its next POST as soon as the last one is answered. Raw HTTP/1.1 over
    kept-alive sockets with pre-encoded requests: an httpx client tops out far below the gateway (~2 ms of
    client CPU a request), so it would measure the client, not the gateway, at A's rate limit."""
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, timeout=30) as http:
        cids = [await conversation(http, f"a{i}") for i in range(min(connections, 16))]
    host, port = url.removeprefix("http://").split(":")

    def request(cid: str) -> bytes:
        body = json.dumps(
            envelope("user_message", {"conversation_id": cid, "content": {"type": "text", "text": "a"}})
        ).encode()
        head = (
            f"POST {MESSAGE_PATH} HTTP/1.1\r\nhost: {host}:{port}\r\nx-api-key: {key}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    sockets = [await asyncio.open_connection(host, int(port)) for _ in range(connections)]
    if ready is not None:
        ready.set()  # connected and idle: B's phases may begin

    async def one(i: int) -> None:
        payload = request(cids[i % len(cids)])
        reader, writer = sockets[i]
        try:
            while not stop.is_set():
                if not flooding.is_set():
                    await flooding.wait()
                    continue
                writer.write(payload)
                head = await reader.readuntil(b"\r\n\r\n")
                status = head[9:12].decode()
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                key_ = "ok" if status == "200" else status
                counts[key_] = counts.get(key_, 0) + 1
                if status == "429":
                    await asyncio.sleep(0.005)
        except (OSError, asyncio.IncompleteReadError):
            counts["errors"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(one(i) for i in range(connections)))


def flood_process(
    url: str, key: str, connections: int, go: Any, stop: Any, counts_out: Any, ready: Any
) -> None:
    """The flood's own process: A floods while ``go`` is set, idles while not, ends on ``stop``."""

    async def main() -> None:
        flooding, done = asyncio.Event(), asyncio.Event()
        counts: dict[str, int] = {"ok": 0, "errors": 0}

        async def watch() -> None:
            while not stop.is_set():
                if go.is_set():
                    flooding.set()
                else:
                    flooding.clear()
                counts_out[0], counts_out[1] = counts["ok"], counts.get("429", 0)
                await asyncio.sleep(0.02)
            counts_out[0], counts_out[1] = counts["ok"], counts.get("429", 0)
            done.set()
            flooding.set()

        watcher = asyncio.create_task(watch())
        await flood_a(url, key, connections, flooding, done, counts, ready)
        await watcher

    asyncio.run(main())


class Flood:
    """Tenant A's flood in a process of its own (B's timings are not taken on a client loop busy with A),
    switched on and off between B's phases."""

    def __init__(self, url: str, key: str, connections: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._go, self._stop, self._ready = context.Event(), context.Event(), context.Event()
        self._counts = context.Array("l", 2)
        self.proc = context.Process(
            target=flood_process,
            args=(url, key, connections, self._go, self._stop, self._counts, self._ready),
            daemon=True,
        )
        self.proc.start()

    async def ready(self) -> None:
        """Wait until the flood's process is up and connected (its start-up is not part of B's phases)."""
        for _ in range(600):
            if self._ready.is_set():
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the flood process did not start")

    @property
    def counts(self) -> tuple[int, int]:
        """(accepted, refused with 429) so far."""
        return self._counts[0], self._counts[1]

    def on(self) -> None:
        self._go.set()

    def off(self) -> None:
        self._go.clear()

    def stop(self) -> None:
        self._stop.set()
        self.proc.join(60)
        if self.proc.is_alive():
            self.proc.kill()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Result:
    label: str
    alone: list[float] = field(default_factory=list)
    alone_rounds: list[list[float]] = field(default_factory=list)
    during: list[float] = field(default_factory=list)
    accepted: int = 0
    refused: int = 0
    flood_seconds: float = 0.0
    gateway_cpu: float = 0.0

    @property
    def ratio(self) -> float:
        return pct(self.during, 0.99) / pct(self.alone, 0.99)

    @property
    def noise(self) -> float:
        """The machine's own spread: p99 of B alone in the odd rounds over the even rounds (or the other way
        round, whichever is larger). A flood ratio near this is indistinguishable from no flood."""
        odd = [x for r in self.alone_rounds[0::2] for x in r]
        even = [x for r in self.alone_rounds[1::2] for x in r]
        if not odd or not even:
            return math.nan
        a, b = pct(odd, 0.99), pct(even, 0.99)
        return max(a, b) / min(a, b)

    def line(self) -> str:
        s = self.flood_seconds
        return (
            f"{self.label:<24} B alone p50 {statistics.median(self.alone):5.1f} p99 {pct(self.alone, 0.99):6.1f} ms"
            f" | during A's flood p50 {statistics.median(self.during):5.1f} p99 {pct(self.during, 0.99):6.1f} ms"
            f" | p99 ratio {self.ratio:5.2f}x | A accepted {self.accepted / s:5.0f} msg/s, 429 {self.refused / s:5.0f}/s"
            f" | gateway CPU {self.gateway_cpu / s:4.0%} ({len(self.alone)}/{len(self.during)} B samples)"
            f" | noise (alone vs alone) {self.noise:4.2f}x"
        )


@contextlib.asynccontextmanager
async def database(postgres: bool) -> AsyncIterator[str | None]:
    """None (the gateway's own SQLite file), or a PostgreSQL schema of its own, dropped afterwards."""
    if not postgres:
        yield None
        return
    import asyncpg

    from scale import POSTGRES

    schema = f"fair_{uuid.uuid4().hex[:10]}"
    try:
        yield f"{POSTGRES}?schema={schema}"
    finally:
        conn = await asyncpg.connect(POSTGRES)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def run(
    label: str,
    env: dict[str, str],
    seconds: float,
    rounds: int,
    connections: int,
    profile: Path | None,
    postgres: bool = False,
) -> Result:
    """One gateway: ``rounds`` times B alone then B during A's flood (``seconds`` each, in all), so a
    drifting machine load hits both alike."""
    async with database(postgres) as database_url:
        keys = {name: bench_key() for name in KEYS}
        result = Result(label)
        profiler = None
        with gateway(list(keys.values()), env, database_url) as child:
            assert child.proc is not None
            pid, url = child.proc.pid, child.http_url
            try:
                flood = Flood(url, keys["A"], connections)
                await flood.ready()
                await measure_b(url, keys["B"], 1.0)  # warm-up
                if profile is not None:
                    from roundtrip import Profiler

                    profiler = Profiler(pid, profile, 200)
                    profiler.start()
                chunk = seconds / rounds
                for _ in range(rounds):
                    alone = await measure_b(url, keys["B"], chunk)
                    result.alone += alone
                    result.alone_rounds.append(alone)
                    flood.on()
                    await asyncio.sleep(0.5)  # the flood is under way
                    (accepted, refused), began = flood.counts, time.monotonic()
                    cpu = cpu_seconds(pid)
                    result.during += await measure_b(url, keys["B"], chunk)
                    result.gateway_cpu += cpu_seconds(pid) - cpu
                    result.flood_seconds += time.monotonic() - began
                    result.accepted += flood.counts[0] - accepted
                    result.refused += flood.counts[1] - refused
                    flood.off()
                    await asyncio.sleep(0.5)  # A's last requests and agent turns are done
                if profiler is not None:
                    profiler.stop()
                flood.stop()
            finally:
                if profiler is not None and profiler.proc is not None and profiler.proc.poll() is None:
                    profiler.proc.kill()
    print(result.line(), flush=True)
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
    parser.add_argument("--rounds", type=int, default=3, help="alone/flood alternations per gateway")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="PostgreSQL (CAPTIVATE_BENCH_POSTGRES, a fresh schema per gateway) instead of a SQLite file",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy raw profile of the fair gateway, to this file"
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="LABEL:VAR=VALUE,...",
        help="one more gateway, with these CAPTIVATE_* variables (repeatable), e.g. 'per-key 4:CAPTIVATE_IN_FLIGHT_PER_KEY=4'",
    )
    args = parser.parse_args()
    env = {}
    if args.per_key is not None:
        env["CAPTIVATE_IN_FLIGHT_PER_KEY"] = str(args.per_key)
    if args.total is not None:
        env["CAPTIVATE_IN_FLIGHT_TOTAL"] = str(args.total)
    pg = args.postgres
    print(
        f"{'PostgreSQL' if pg else 'SQLite'}; load average {os.getloadavg()[0]:.1f} before the run",
        flush=True,
    )
    off = await run(
        "admission off", {"CAPTIVATE_IN_FLIGHT_PER_KEY": "0"}, args.seconds, args.rounds, args.flood, None, pg
    )
    on = await run(
        f"fair admission {env or '(default)'}", env, args.seconds, args.rounds, args.flood, args.profile, pg
    )
    for spec in args.also:
        label, _, assignments = spec.partition(":")
        extra = dict(item.split("=", 1) for item in assignments.split(",") if item)
        await run(label, extra, args.seconds, args.rounds, args.flood, None, pg)
    goal = "met" if on.ratio <= 2.0 else "NOT met"
    print(
        f"goal (B's p99 during the flood within 2x of alone): {goal}; off {off.ratio:.2f}x -> on {on.ratio:.2f}x"
    )
    if args.profile is not None:
        from roundtrip import summarize_profile

        print(summarize_profile(args.profile, 200, args.seconds, max(1, len(on.during)), top=25))
    print(f"load average {os.getloadavg()[0]:.1f} after the run")


if __name__ == "__main__":
    asyncio.run(main())
