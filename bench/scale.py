"""Scale-out benchmark: throughput and round trip with 1, 2 and 4 gateway processes on PostgreSQL + Redis.

A benchmark, not a test. Run from the repository root::

    .venv/bin/python bench/scale.py                          # 1,000 conversations; SQLite, then 1/2/4 workers on PG+Redis
    .venv/bin/python bench/scale.py --profile                # + py-spy profile of the 2-worker case
    .venv/bin/python bench/scale.py --workers 2 --no-sqlite --seconds 30

Every configuration gets a fresh database (a PostgreSQL schema of its own, dropped afterwards, or a SQLite
file), a ``captivate-chat serve`` (``--workers N --broker redis://…`` on PostgreSQL; plain ``serve`` on
SQLite) with rate limits off, and the same load from ``--clients`` client processes. A conversation is one
browser as the npm client 7.0.0 drives it: one WebSocket and one kept-alive HTTP connection, each of which
the kernel hands to any worker (``SO_REUSEPORT``: no sticky sessions, so with N workers a post lands on
another worker than the socket N-1 times in N). The round trip runs from sending the ``user_message`` POST
until the demo agent's ``bot_message`` arrives on the WebSocket. Phases, per configuration:

1. **connect** — every conversation opens its socket and HTTP connection and starts; the gateway's
   resident memory before and after gives the memory per conversation (one socket + one HTTP connection).
2. **saturation** — closed loop: every conversation sends its next message as soon as the reply to the
   previous one came; ``--warmup`` s, then ``--seconds`` s measured. Throughput = round trips completed in
   the window per second; p50/p99 here are mostly queueing (Little: 1,000 in flight / throughput).
3. **fixed rate** — ``--rate`` messages per second over all conversations (each on its own schedule, with
   a random phase); latency is measured from the *scheduled* send time (no coordinated omission).
4. **profile** (``--profile``, the 2-worker case only) — another saturation phase with ``py-spy record
   --subprocesses`` attached to the workers; its throughput is lower (sampling costs) and is printed apart.

CPU per round trip is read from /proc for the gateway processes, the PostgreSQL backends serving them (found
by ``application_name``; the WAL writer and checkpointer are not counted), our redis-server and the client
processes; the machine's busy
share comes from /proc/stat. PostgreSQL row writes per round trip come from ``pg_stat_user_tables`` of the
configuration's own schema (2 event rows inserted, and the conversation row updated how many times).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from benchkit import LOADED, QUIET, READY, UNLIMITED, own_redis, serve_command

EVENT_PATH = "/api/custom-channel/sockets/message"
POSTGRES = os.environ.get("CAPTIVATE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------------
# the client side (a child process: ``bench/scale.py --client``, commands on stdin, results on stdout)


class RawHttp:
    """One kept-alive HTTP/1.1 connection, as cheap as a client gets (the gateway answers with Content-Length)."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port, self.key = host, port, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """POST an event; a connection the server closed meanwhile (idle keep-alive timeout) is reopened and
        the request sent again, as browsers do (our posts are idempotent: they carry a ``client_msg_id``)."""
        try:
            return await self._post(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.reconnects += 1
            self.close()
            await self.connect()
            return await self._post(body)

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            b"POST "
            + EVENT_PATH.encode()
            + b" HTTP/1.1\r\nhost: "
            + self.host.encode()
            + b"\r\nx-api-key: "
            + self.key.encode()
            + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


def envelope(event_type: str, payload: dict[str, Any], socket_id: str) -> bytes:
    event = {"event_type": event_type, "event_payload": payload, "socket_id": socket_id}
    return json.dumps({"action": "sendMessage", "event": event}, separators=(",", ":")).encode()


class Conv:
    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port, self.key = host, port, key
        self.http = RawHttp(host, port, key)
        self.ws: Any = None
        self.socket_id = ""
        self.cid = ""
        self.waiter: asyncio.Future[float] | None = None
        self.reader: asyncio.Task[None] | None = None
        self.n = 0

    async def open(self, compression: str | None) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(
            f"ws://{self.host}:{self.port}/dev?apiKey={self.key}",
            compression=compression,
            max_size=None,
            ping_interval=None,
            open_timeout=60,
        )
        hello = json.loads(await self.ws.recv())
        self.socket_id = hello["event"]["event_payload"]["socket_id"]
        await self.http.connect()
        status, body = await self.http.post(
            envelope("conversation_start", {"userId": f"u-{uuid.uuid4().hex[:8]}"}, self.socket_id)
        )
        if status != 200:
            raise RuntimeError(f"conversation_start: HTTP {status} {body[:200]!r}")
        self.cid = json.loads(body)["conversation_id"]
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            if '"bot_message"' in raw[:40] and self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(time.perf_counter())

    async def round_trip(self) -> float:
        """Seconds from the POST until the ``bot_message``."""
        self.n += 1
        self.waiter = asyncio.get_running_loop().create_future()
        sent = time.perf_counter()
        payload = {
            "conversation_id": self.cid,
            "content": {"type": "text", "text": f"m{self.n}"},
            "client_msg_id": f"c{self.n}",
        }
        status, body = await self.http.post(envelope("user_message", payload, self.socket_id))
        if status != 200:
            raise RuntimeError(f"user_message: HTTP {status} {body[:200]!r}")
        received = await asyncio.wait_for(self.waiter, 60)
        return received - sent

    async def close(self) -> None:
        self.http.close()
        if self.reader is not None:
            self.reader.cancel()
        await self.ws.close()


def failure(exc: Exception) -> str:
    """How a round trip failed: the exception type, and for a refused event its HTTP status."""
    match = re.search(r"HTTP (\d{3})", str(exc))
    return f"{type(exc).__name__} (HTTP {match.group(1)})" if match else type(exc).__name__


async def drive(convs: list[Conv], phase: dict[str, Any]) -> dict[str, Any]:
    samples: list[float] = []
    completed = 0
    errors = Counter[str]()
    start, measure_from, end = phase["start"], phase["measure_from"], phase["end"]

    async def closed(conv: Conv) -> None:
        nonlocal completed
        await asyncio.sleep(max(0.0, start - time.time()) + random.random() * 0.2)
        while time.time() < end:
            try:
                rtt = await conv.round_trip()
            except Exception as exc:  # noqa: BLE001 -- counted and shown, the run goes on
                errors[failure(exc)] += 1
                await asyncio.sleep(0.5)
                continue
            if measure_from <= time.time() <= end:  # completed in the window, whenever it began
                samples.append(rtt)
                completed += 1

    async def paced(conv: Conv, period: float) -> None:
        nonlocal completed
        due = start + random.random() * period
        while due < end:
            await asyncio.sleep(max(0.0, due - time.time()))
            try:
                await conv.round_trip()
            except Exception as exc:  # noqa: BLE001
                errors[failure(exc)] += 1
            if measure_from <= time.time() <= end:
                samples.append(time.time() - due)  # from the scheduled time: a late send counts as latency
                completed += 1
            due += period

    if phase["mode"] == "closed":
        await asyncio.gather(*(closed(conv) for conv in convs))
    else:
        period = phase["conversations"] / phase["rate"]
        await asyncio.gather(*(paced(conv, period) for conv in convs))
    reconnects = sum(conv.http.reconnects for conv in convs)
    for conv in convs:
        conv.http.reconnects = 0
    if reconnects:
        errors["http reconnects (idle keep-alive closed)"] += reconnects
    return {"samples": [round(s * 1000, 3) for s in samples], "completed": completed, "errors": dict(errors)}


async def client_main() -> None:
    config = json.loads(sys.stdin.readline())
    loop = asyncio.get_running_loop()
    convs = [Conv(config["host"], config["port"], config["key"]) for _ in range(config["count"])]
    gate = asyncio.Semaphore(25)

    async def open_one(conv: Conv) -> None:
        async with gate:
            await conv.open(config["compression"])

    await asyncio.gather(*(open_one(conv) for conv in convs))
    print(json.dumps({"ready": len(convs)}), flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "quit":
            break
        result = await drive(convs, json.loads(line))
        print(json.dumps(result), flush=True)
    await asyncio.gather(*(conv.close() for conv in convs), return_exceptions=True)


# ---------------------------------------------------------------------------------------------------------
# the orchestrator


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid: int) -> int:
    try:
        match = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


@dataclass
class Config:
    name: str
    workers: int
    database: str
    broker: str | None
    schema: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    config: Config
    conversations: int = 0
    connect_seconds: float = 0.0
    kib_per_conversation: float = 0.0
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    profile: str = ""
    pg_updates: float | None = None


def pg_execute(sql: str) -> list[tuple[Any, ...]]:
    import asyncpg

    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(POSTGRES)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(run())


def pg_updates_per_trip(schema: str) -> float:
    """Rows of ``conversations`` updated per round trip (2 stored events), from the schema's table counters
    over the whole configuration (they are flushed late, so short windows would undercount)."""
    rows = dict(
        pg_execute(
            f"SELECT relname, n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE schemaname = '{schema}'"
            " AND relname IN ('events', 'conversations')"
        )
    )
    events = int(rows.get("events", 0))
    return 2 * int(rows.get("conversations", 0)) / events if events else float("nan")


class Gateway:
    def __init__(self, config: Config, key: str) -> None:
        cmd = serve_command(config.database, [key], "--workers", str(config.workers))
        if config.broker:
            cmd += ["--broker", config.broker]
        env = {
            **os.environ,
            "COLUMNS": "200",
            **QUIET,
            **UNLIMITED,
            **LOADED,
            **config.env,
        }
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 -- lives as long as the gateway
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.port = 0
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            match = READY.search(line)
            if match:
                self.port = int(match.group(2))
            if "Ctrl+C stops the gateway" in line:
                break
        if not self.port:
            self.log.seek(0)
            raise SystemExit(f"gateway did not start:\n{self.log.read()[-3000:]}")
        self.workers = children(self.proc.pid) if config.workers > 1 else [self.proc.pid]

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid, *[p for p in self.workers if p != self.proc.pid]]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.seek(0)
        problems = [line for line in self.log.read().splitlines() if " ERROR " in line or " WARNING " in line]
        if problems:
            print(
                f"  the gateway logged {len(problems)} warnings/errors, e.g.:\n    "
                + "\n    ".join(problems[:5])
            )


class Clients:
    def __init__(
        self, port: int, key: str, conversations: int, processes: int, compression: str | None
    ) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        for index in range(processes):
            count = conversations // processes + (1 if index < conversations % processes else 0)
            proc = subprocess.Popen(
                [sys.executable, __file__, "--client"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdin is not None
            proc.stdin.write(
                json.dumps(
                    {
                        "host": "127.0.0.1",
                        "port": port,
                        "key": key,
                        "count": count,
                        "compression": compression,
                    }
                )
                + "\n"
            )
            proc.stdin.flush()
            self.procs.append(proc)

    def read_all(self) -> list[dict[str, Any]]:
        results = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise SystemExit("a client process failed (see its error above)")
            results.append(json.loads(line))
        return results

    def send(self, message: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            try:
                proc.stdin.write(message + "\n")
                proc.stdin.flush()
            except BrokenPipeError:
                pass  # that client is gone; read_all says so

    def stop(self) -> None:
        self.send("quit")
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


DELAY_BUCKET = re.compile(r'^captivate_broker_delay_seconds_bucket\{le="([^"]+)"\} ([\d.e+]+)$', re.MULTILINE)


def broker_delays(port: int, workers: int) -> dict[str, list[tuple[float, float]]]:
    """Each worker's ``captivate_broker_delay_seconds`` buckets (cumulative counts by upper bound), read from
    ``/metrics`` on new connections until every worker answered (the kernel picks one per connection)."""
    import http.client

    found: dict[str, list[tuple[float, float]]] = {}
    for _ in range(50 * workers):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            text = response.read().decode()
            worker = response.getheader("x-captivate-worker") or "0"
        finally:
            conn.close()
        found[worker] = [(float(bound), float(count)) for bound, count in DELAY_BUCKET.findall(text)]
        if len(found) >= workers:
            break
    return found


def delay_percentiles(
    before: dict[str, list[tuple[float, float]]], after: dict[str, list[tuple[float, float]]]
) -> dict[str, float]:
    """Broker delay p50/p99 (ms) over the window, from the buckets' growth on all workers (linear within a
    bucket), and how many messages were relayed."""
    bounds = [bound for bound, _ in next(iter(after.values()), [])]
    counts = [0.0] * len(bounds)
    for worker, buckets in after.items():
        old = dict(before.get(worker, []))
        for i, (bound, count) in enumerate(buckets):
            counts[i] += count - old.get(bound, 0.0)
    total = counts[-1] if counts else 0.0
    result = {"messages": total}
    for name, q in (("p50", 0.50), ("p99", 0.99)):
        if total <= 0:
            result[name] = float("nan")
            continue
        rank, low, below = q * total, 0.0, 0.0
        for bound, cumulative in zip(bounds, counts, strict=True):
            if cumulative >= rank:
                high = bound if bound != float("inf") else low * 2
                share = (rank - below) / max(1e-9, cumulative - below)
                result[name] = (low + (high - low) * share) * 1000
                break
            low, below = bound, cumulative
    return result


class CpuWatch:
    """CPU seconds of each group of processes, and the machine's busy share, between two readings. PostgreSQL:
    the backends serving this configuration (found by ``application_name``), not the server's background
    writers, nor anybody else's sessions."""

    def __init__(self, groups: dict[str, list[int]], application_name: str | None) -> None:
        self.groups = groups
        self.application_name = application_name
        self.backends: list[int] = []

    def read(self) -> dict[str, float]:
        if self.application_name and not self.backends:
            self.backends = [
                int(r[0])
                for r in pg_execute(
                    f"SELECT pid FROM pg_stat_activity WHERE application_name = '{self.application_name}'"
                )
            ]
        reading = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}
        reading["postgres"] = sum(cpu_seconds(p) for p in self.backends)
        busy, total = machine_busy()
        reading["_busy"], reading["_total"] = busy, total
        return reading


def run_phase(
    clients: Clients,
    watch: CpuWatch,
    phase: dict[str, Any],
    profiler: list[str] | None = None,
    delays: Any = None,
) -> dict[str, Any]:
    clients.send(json.dumps(phase))
    time.sleep(max(0.0, phase["measure_from"] - time.time()))
    delays_before = delays() if delays else {}
    before = watch.read()
    spy = (
        subprocess.Popen(profiler, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT) if profiler else None
    )
    time.sleep(max(0.0, phase["end"] - time.time()))
    after = watch.read()
    delays_after = delays() if delays else {}
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    results = clients.read_all()
    samples = [s for r in results for s in r["samples"]]
    completed = sum(r["completed"] for r in results)
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    seconds = phase["end"] - phase["measure_from"]
    trips = max(1, completed)
    cpu = {name: (after[name] - before[name]) * 1000 / trips for name in after if not name.startswith("_")}
    busy = (after["_busy"] - before["_busy"]) / max(1.0, after["_total"] - before["_total"])
    return {
        "throughput": completed / seconds,
        "p50": percentile(samples, 0.50),
        "p99": percentile(samples, 0.99),
        "completed": completed,
        "errors": dict(errors),
        "cpu_ms": cpu,
        "busy": busy,
        "broker": delay_percentiles(delays_before, delays_after) if delays else {},
    }


ASYNCPG_PARTS = (
    ("PoolConnectionHolder.release", "pool release (asyncpg RESET query)"),
    ("Transaction.__aenter__", "BEGIN"),
    ("Transaction.__aexit__", "COMMIT"),
    ("Pool._acquire", "pool acquire"),
)
WRAPPERS = (
    "<module>",
    "main ",
    "run_worker ",
    "run ",
    "serve ",
    "WorkerHeader.",
    "MetricsMiddleware.",
    "AccessLog.",
)
"""Entry points and middlewares that every request passes through: not worth listing as inclusive costs."""
LOOP_LEAVES = ("run_forever ", "run_until_complete ", "Runner.run ", "Server.serve ", "run (", "_run_once ")
"""A sample whose innermost Python frame is the loop's entry point is inside uvloop's C code."""
CATEGORIES = [
    ("asyncpg (PostgreSQL driver)", ("asyncpg",)),
    ("redis client (broker)", ("redis/", "broker/")),
    ("WebSocket framing (websockets)", ("websockets/",)),
    ("HTTP server (uvicorn, httptools)", ("uvicorn/", "httptools", "h11")),
    ("ASGI framework (starlette, fastapi)", ("starlette/", "fastapi/")),
    ("validation (pydantic)", ("pydantic",)),
    ("JSON", ("json/",)),
    ("logging", ("logging/",)),
    ("gateway code (captivate_chat_api)", ("captivate_chat_api/",)),
    ("asyncio (Python part)", ("asyncio/",)),
]


def categorize(frame: str) -> str:
    if frame.startswith(LOOP_LEAVES):
        return "event loop internals (uvloop, C): socket I/O, scheduling"
    for name, markers in CATEGORIES:
        if any(marker in frame for marker in markers):
            return name
    return "other"


def summarize_profile(path: Path, rate: int, seconds: float, trips: int, top: int = 14) -> str:
    """The workers' CPU by category of the innermost frame, and the top inclusive gateway functions."""
    by_category: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    asyncpg_parts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread ("))]
        if not frames:
            continue
        total += n
        # the innermost frame that names a library or our code decides the category
        leaf = frames[-1]
        by_category[categorize(leaf)] += n
        leaves[re.sub(r" \((?:.*/)?([^/]+\.py)(?::\d+)?\)", r" (\1)", leaf)] += n
        for name in {
            re.sub(r":\d+\)$", ")", re.sub(r" \(.*/captivate_chat_api/", " (", f))
            for f in frames
            if "captivate_chat_api/" in f
        }:
            if not name.startswith(WRAPPERS):
                inclusive[name] += n
        if "asyncpg" in stack:
            part = next((label for marker, label in ASYNCPG_PARTS if marker in stack), "statements")
            asyncpg_parts[part] += n
    if not total:
        return "  (no samples: py-spy needs ptrace rights)"

    def ms(samples: int) -> float:
        return samples * 1000 / rate / trips

    lines = [
        (
            f"  {total} samples over {seconds:.0f} s = {ms(total):.2f} ms of worker CPU per round trip (sampled: a busy machine"
            " inflates this, as a runnable process waiting for a core is sampled too; trust the shares, and the table's"
            " /proc figure for the total)"
        ),
        f"  {'by innermost frame':<60} {'share':>6} {'ms/trip':>8}",
    ]
    lines += [f"    {name:<58} {n / total:6.1%} {ms(n):8.3f}" for name, n in by_category.most_common()]
    lines.append(f"  {'asyncpg, by what it was doing':<60}")
    lines += [f"    {name:<58} {n / total:6.1%} {ms(n):8.3f}" for name, n in asyncpg_parts.most_common()]
    lines.append(f"  {'hottest innermost frames':<60}")
    lines += [f"    {name[:80]:<80} {n / total:6.1%}" for name, n in leaves.most_common(top)]
    lines.append(f"  {'gateway functions, inclusive':<60}")
    lines += [f"    {name[:80]:<80} {n / total:6.1%}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def bench_config(config: Config, args: argparse.Namespace, redis_pids: list[int]) -> Result:
    key = "cck_bench_" + secrets.token_urlsafe(24)
    result = Result(config)
    gateway = Gateway(config, key)
    clients: Clients | None = None
    try:
        time.sleep(1.0)
        rss0 = sum(rss_kib(p) for p in gateway.workers)
        began = time.time()
        clients = Clients(
            gateway.port,
            key,
            args.conversations,
            args.clients,
            None if args.compression == "none" else "deflate",
        )
        ready = clients.read_all()
        result.conversations = sum(r["ready"] for r in ready)
        result.connect_seconds = time.time() - began
        time.sleep(1.0)
        rss1 = sum(rss_kib(p) for p in gateway.workers)
        result.kib_per_conversation = (rss1 - rss0) / max(1, result.conversations)
        watch = CpuWatch(
            {"gateway": gateway.pids, "redis": redis_pids, "client": [p.pid for p in clients.procs]},
            config.schema and f"captivate_{config.schema}",
        )

        def phase(mode: str, seconds: float, **extra: Any) -> dict[str, Any]:
            start = time.time() + 0.5
            return {
                "mode": mode,
                "start": start,
                "measure_from": start + args.warmup,
                "end": start + args.warmup + seconds,
                "conversations": result.conversations,
                **extra,
            }

        print(
            f"  {config.name}: {result.conversations} conversations connected in {result.connect_seconds:.1f} s; saturating",
            flush=True,
        )
        delays = (lambda: broker_delays(gateway.port, config.workers)) if config.broker else None
        result.phases["saturation"] = run_phase(clients, watch, phase("closed", args.seconds), delays=delays)
        if args.rate:
            print(f"  {config.name}: fixed rate {args.rate:g}/s", flush=True)
            result.phases["rate"] = run_phase(
                clients, watch, phase("rate", args.rate_seconds, rate=args.rate), delays=delays
            )
        if args.profile and config.workers == args.profile_workers and config.broker:
            print(f"  {config.name}: profiling", flush=True)
            out = Path(tempfile.gettempdir()) / f"scale-profile-{os.getpid()}.txt"
            exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            cmd = [
                exe,
                "record",
                "--pid",
                str(gateway.proc.pid),
                "--subprocesses",
                "--rate",
                str(args.profile_rate),
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
                "--gil",
            ]
            profiled = run_phase(clients, watch, phase("closed", args.seconds), profiler=cmd)
            result.phases["profiled"] = profiled
            if out.exists():
                result.profile = summarize_profile(
                    out, args.profile_rate, args.seconds, max(1, profiled["completed"])
                )
                result.profile += f"\n  raw collapsed stacks: {out} (open in https://www.speedscope.app)"
    finally:
        if clients is not None:
            clients.stop()
        gateway.stop()
    if config.schema:
        time.sleep(2.0)  # let the table counters be flushed
        result.pg_updates = pg_updates_per_trip(config.schema)
    return result


def table(results: list[Result], args: argparse.Namespace) -> str:
    head = (
        f"{'configuration':<30} {'conv':>5} {'trips/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'@' + format(args.rate, 'g') + '/s p50':>10} {'p99':>7} {'CPU ms/trip: gw':>16} {'pg':>5} {'redis':>6} "
        f"{'client':>7} {'busy':>5} {'KiB/conv':>8} {'broker ms p50':>13} {'p99':>6} {'msgs/trip':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        s = r.phases["saturation"]
        rate = r.phases.get("rate", {})
        cpu = s["cpu_ms"]
        lines.append(
            f"{r.config.name:<30} {r.conversations:>5} {s['throughput']:>8.0f} {s['p50']:>7.0f} {s['p99']:>7.0f} "
            f"{rate.get('p50', float('nan')):>10.1f} {rate.get('p99', float('nan')):>7.1f} {cpu['gateway']:>16.2f} "
            f"{cpu['postgres']:>5.2f} {cpu['redis']:>6.2f} {cpu['client']:>7.2f} {s['busy']:>5.0%} "
            f"{r.kib_per_conversation:>8.1f} {s['broker'].get('p50', float('nan')):>13.1f} "
            f"{s['broker'].get('p99', float('nan')):>6.1f} {s['broker'].get('messages', 0) / max(1, s['completed']):>9.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2, 4], help="process counts on PostgreSQL + Redis"
    )
    parser.add_argument(
        "--no-sqlite", action="store_true", help="skip the single-process SQLite configuration"
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds before measuring (longer than a round trip)"
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measured seconds of the saturation phase"
    )
    parser.add_argument(
        "--rate", type=float, default=40.0, help="messages/s of the fixed-rate phase (0: skip it)"
    )
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument(
        "--compression",
        choices=["deflate", "none"],
        default="deflate",
        help="WebSocket permessage-deflate offered by the clients (browsers do)",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=None,
        help="CAPTIVATE_IN_FLIGHT_PER_KEY and _TOTAL (fair admission; 0: off; default: the gateway's, 8 and 64)",
    )
    parser.add_argument(
        "--in-flight-total",
        type=int,
        default=None,
        help="CAPTIVATE_IN_FLIGHT_TOTAL alone (units under way per process, commits' waits included)",
    )
    parser.add_argument("--redis", help="redis:// URL (default: a redis-server of our own on a free port)")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy profile of one configuration (--profile-workers)"
    )
    parser.add_argument("--profile-rate", type=int, default=200)
    parser.add_argument(
        "--profile-workers", type=int, default=2, help="which PostgreSQL+Redis configuration to profile"
    )
    args = parser.parse_args()
    if args.client:
        try:
            import uvloop

            uvloop.run(client_main())
        except ImportError:
            asyncio.run(client_main())
        return

    redis = None if args.redis else own_redis()
    broker = args.redis or (redis.url if redis else None)
    redis_pids = [redis.proc.pid] if redis else []
    workdir = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    env = (
        {}
        if args.in_flight is None
        else {
            "CAPTIVATE_IN_FLIGHT_PER_KEY": str(args.in_flight),
            "CAPTIVATE_IN_FLIGHT_TOTAL": str(args.in_flight),
        }
    )
    if args.in_flight_total is not None:
        env["CAPTIVATE_IN_FLIGHT_TOTAL"] = str(args.in_flight_total)
    configs = (
        []
        if args.no_sqlite
        else [Config("1 process, SQLite", 1, f"sqlite:///{workdir / 'bench.db'}", None, env=env)]
    )
    for n in args.workers:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        database = f"{POSTGRES}?schema={schema}&application_name=captivate_{schema}"
        configs.append(
            Config(f"{n} process{'es' if n > 1 else ''}, PostgreSQL+Redis", n, database, broker, schema, env)
        )
    print(
        f"{os.cpu_count()} CPUs; {args.conversations} conversations over {args.clients} client processes; "
        f"warm-up {args.warmup:g} s, measured {args.seconds:g} s; admission (in flight per key) "
        f"{'the default' if args.in_flight is None else args.in_flight or 'off'}"
        f"{'' if args.in_flight_total is None else f', in all {args.in_flight_total}'}; load average {os.getloadavg()[0]:.1f} before the run",
        flush=True,
    )
    results = []
    try:
        for config in configs:
            try:
                results.append(bench_config(config, args, redis_pids))
            finally:
                if config.schema:
                    pg_execute(f'DROP SCHEMA IF EXISTS "{config.schema}" CASCADE')
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(results, args))
    for r in results:
        errors = {k: v for phase in r.phases.values() for k, v in phase["errors"].items()}
        if errors:
            print(f"  {r.config.name}: errors {errors}")
    print(
        "\nCPU ms/trip: CPU time per round trip (2 stored events + 1 POST + 2 frames out) of the gateway processes,"
        " of the PostgreSQL backends serving them, of our redis-server and of the client processes; busy: the"
        " machine's CPUs over the measured window (anything else running counts too). broker ms: the delay of each"
        " message relayed between processes, publish to delivery (captivate_broker_delay_seconds of every worker,"
        " p50/p99 interpolated within its buckets); msgs/trip: messages relayed per round trip (each process"
        " hears only the conversations of its own sockets)."
    )
    for r in results:
        rate = r.phases.get("rate", {}).get("broker", {})
        if rate.get("messages"):
            print(
                f"  {r.config.name}: broker delay at {args.rate:g} messages/s: p50 {rate['p50']:.1f} ms,"
                f" p99 {rate['p99']:.1f} ms ({rate['messages']:.0f} messages relayed)"
            )
    for r in results:
        if r.pg_updates is not None:
            print(
                f"  {r.config.name}: PostgreSQL row writes per round trip: 2 INSERT events + {r.pg_updates:.1f} UPDATE conversations"
            )
    for r in results:
        if "profiled" in r.phases:
            p = r.phases["profiled"]
            print(f"\nProfile of {r.config.name} ({p['throughput']:.0f} trips/s while sampled):\n{r.profile}")
    print(f"\nload average {os.getloadavg()[0]:.1f} after the run")


if __name__ == "__main__":
    main()
