"""The data-path table: the gateway against a floor (a minimal same-schema, same-durability round trip).

A benchmark, not a test. Run from the repository root::

    .venv/bin/python bench/floor.py                          # the whole table (~5 min)
    .venv/bin/python bench/floor.py --conversations 1000 --seconds 5 --servers floor gateway

One round trip: the client sends a ``user_message`` (a WebSocket frame, or an HTTP POST on a kept-alive
connection, as the npm client 7.0.0 does), the server stores it with the next ``seq``, echoes it on the
WebSocket, the demo agent answers ``You said: ...``, the answer is stored and sent; the trip ends when that
``bot_message`` arrives. Every conversation is its own WebSocket (and its own HTTP connection), driven in a
closed loop (next message when the answer came) from ``--clients`` client processes.

Servers (each measured in the same run, so the ratios are fair on a shared, noisy machine):

- **echo**: a bare ``websockets`` echo server; a trip is one frame there and back.
- **floor** (``--serve-floor``, this file): the same schema as the gateway (the gateway's own SQLite
  migrations), WAL, ``synchronous=NORMAL`` (or FULL), an acknowledgement only after COMMIT; one writer
  thread committing everything queued as one transaction (group commit), one ``call_soon_threadsafe`` per
  batch, frames fanned out from that callback; orjson; no permessage-deflate. It is what a lean
  implementation of the same round trip costs: every other figure is printed as a ratio to it.
- **gateway**: ``captivate-chat serve`` (SQLite; rate limits off unless the row says "as shipped", which
  also has the access log and JSON logs on; metrics are always on).

For each cell: round trips/s, CPU ms per trip of the server process (all threads, /proc), context switches
per trip (voluntary + involuntary, all threads) and the p50 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from benchkit import LOADED, QUIET, READY, UNLIMITED, serve_command

try:
    import orjson

    def dumps(value: Any) -> str:
        return orjson.dumps(value).decode()

    loads = orjson.loads
except ImportError:  # pragma: no cover - the gateway's [server] extra brings it

    def dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    loads = json.loads

TICK = os.sysconf("SC_CLK_TCK")
EVENT_PATH = "/api/custom-channel/sockets/message"


def frame(event_type: str, payload: dict[str, Any]) -> str:
    return dumps({"event": {"event_type": event_type, "event_payload": payload}})


# ---------------------------------------------------------------------------------------------------------
# the floor server


class GroupWriter:
    """One thread; every job queued while the last transaction ran is committed in the next one, and the
    whole batch comes back to the loop with one ``call_soon_threadsafe``."""

    def __init__(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        self.conn, self.loop = conn, loop
        self.jobs: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any], Callable[[Any], None]]] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._run, daemon=True, name="floor-writer").start()

    def submit(self, work: Callable[[sqlite3.Connection], Any], done: Callable[[Any], None]) -> None:
        self.jobs.put((work, done))

    def _run(self) -> None:
        conn = self.conn
        while True:
            batch = [self.jobs.get()]
            while True:
                try:
                    batch.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            conn.execute("BEGIN IMMEDIATE")
            results = [(done, work(conn)) for work, done in batch]
            conn.execute("COMMIT")
            self.loop.call_soon_threadsafe(_complete, results)


def _complete(results: list[tuple[Callable[[Any], None], Any]]) -> None:
    for done, result in results:
        done(result)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


async def create_schema(path: str) -> None:
    """The gateway's own migrations: the very same tables and indexes."""
    from captivate_chat_api.server.store.sqlite import SQLiteStore

    store = SQLiteStore(path)
    await store.open()
    await store.close()


class Floor:
    def __init__(self, path: str, synchronous: str, key: str, loop: asyncio.AbstractEventLoop) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.channel = "ch_floor"
        conn.execute(
            "INSERT INTO channels (id, name, agent, created_at) VALUES (?, 'floor', 'demo', ?)",
            (self.channel, now()),
        )
        self.key = key
        self.writer = GroupWriter(conn, loop)
        self.last_seq: dict[str, int] = {}
        self.sockets: dict[str, Any] = {}
        self.bound: dict[str, Any] = {}

    def start(self, user_id: str, done: Callable[[str], None]) -> None:
        cid = str(uuid.uuid4())
        stamp = now()

        def work(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO conversations (id, channel_id, user_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (cid, self.channel, user_id, stamp, stamp),
            )
            return cid

        self.last_seq[cid] = 0
        self.writer.submit(work, done)

    def append(
        self,
        cid: str,
        event_type: str,
        sender: str,
        payload: dict[str, Any],
        client_msg_id: str | None,
        done: Callable[[dict[str, Any]], None],
    ) -> None:
        seq = self.last_seq[cid] = self.last_seq[cid] + 1
        message_id = f"msg_{uuid.uuid4().hex}"
        stamp = now()
        body = dumps(payload)

        def work(conn: sqlite3.Connection) -> dict[str, Any]:
            conn.execute(
                "INSERT INTO events (conversation_id, seq, event_type, sender, message_id, client_msg_id, payload,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (cid, seq, event_type, sender, message_id, client_msg_id, body, stamp),
            )
            conn.execute(
                "UPDATE conversations SET last_seq = ?, updated_at = ? WHERE id = ?", (seq, stamp, cid)
            )
            out = {"conversation_id": cid, **payload, "seq": seq, "message_id": message_id}
            if client_msg_id:
                out["client_msg_id"] = client_msg_id
            return out

        self.writer.submit(work, done)

    def serve(
        self, envelope: dict[str, Any], ws: Any, reply: Callable[[dict[str, Any]], None] | None
    ) -> None:
        """One client event; ``reply`` is the HTTP body's sender (None on the WebSocket)."""
        event = envelope["event"]
        kind, payload = event["event_type"], event.get("event_payload") or {}
        if kind == "conversation_start":

            def started(cid: str) -> None:
                if ws is not None:
                    self.bound[cid] = ws
                body = {"conversation_id": cid}
                if reply is not None:
                    reply(
                        {
                            "status": "success",
                            "conversation_id": cid,
                            "event": {"event_type": "conversation_start_success", "event_payload": body},
                        }
                    )
                elif ws is not None:
                    ws.send_soon(frame("conversation_start_success", body))

            self.start(str(payload.get("userId", "")), started)
        elif kind == "user_message":
            cid = payload["conversation_id"]
            content = payload.get("content")
            text = content.get("text", "") if isinstance(content, dict) else str(content)

            def stored(out: dict[str, Any]) -> None:
                target = self.bound.get(cid)
                if target is not None:
                    target.send_soon(frame("user_message", out))
                if reply is not None:
                    reply(
                        {
                            "status": "success",
                            "conversation_id": cid,
                            "message_id": out["message_id"],
                            "seq": out["seq"],
                            "client_msg_id": out.get("client_msg_id"),
                            "duplicate": False,
                        }
                    )
                answer = {"content": {"type": "text", "text": f"You said: {text}"}}
                self.append(cid, "bot_message", "bot", answer, None, answered)

            def answered(out: dict[str, Any]) -> None:
                target = self.bound.get(cid)
                if target is not None:
                    target.send_soon(frame("bot_message", out))

            self.append(
                cid, "user_message", "user", {"content": content}, payload.get("client_msg_id"), stored
            )


class FloorSocket:
    """A websockets connection with a writer task fed without awaiting (frames leave in order)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.out: asyncio.Queue[str] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._drain())

    def send_soon(self, text: str) -> None:
        self.out.put_nowait(text)

    async def _drain(self) -> None:
        while True:
            await self.ws.send(await self.out.get())


class FloorHttp(asyncio.Protocol):
    """Keep-alive HTTP/1.1 POSTs with a Content-Length body: just what the client sends."""

    def __init__(self, floor: Floor) -> None:
        self.floor, self.buffer = floor, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            if len(rest) < length:
                return
            body, self.buffer = rest[:length], rest[length:]
            if b"x-api-key: " + self.floor.key.encode() not in head.lower():
                self.respond(401, {"error_code": 401, "error_desc": "missing or invalid x-api-key"})
                continue
            envelope = loads(body)
            ws = self.floor.sockets.get(envelope["event"].get("socket_id"))
            self.floor.serve(envelope, ws, lambda out: self.respond(200, out))

    def respond(self, status: int, body: dict[str, Any]) -> None:
        data = dumps(body).encode()
        self.transport.write(
            b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"  # type: ignore[attr-defined]
            % (status, len(data), data)
        )


async def serve_floor(path: str, synchronous: str, key: str) -> None:
    from websockets.asyncio.server import serve

    loop = asyncio.get_running_loop()
    floor = Floor(path, synchronous, key, loop)

    async def handle(ws: Any) -> None:
        sock = FloorSocket(ws)
        socket_id = uuid.uuid4().hex
        floor.sockets[socket_id] = sock
        sock.send_soon(frame("socket_connected", {"socket_id": socket_id}))
        try:
            async for raw in ws:
                floor.serve(loads(raw), sock, None)
        finally:
            floor.sockets.pop(socket_id, None)
            sock.task.cancel()

    http = await loop.create_server(lambda: FloorHttp(floor), "127.0.0.1", 0)
    async with serve(handle, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None) as server:
        ws_port = server.sockets[0].getsockname()[1]
        http_port = http.sockets[0].getsockname()[1]
        print(f"listening ws={ws_port} http={http_port}", flush=True)
        await asyncio.Future()


async def serve_echo() -> None:
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None) as server:
        print(f"listening ws={server.sockets[0].getsockname()[1]} http=0", flush=True)
        await asyncio.Future()


# ---------------------------------------------------------------------------------------------------------
# the client side (``--client``: a config line on stdin, then one phase per line; results on stdout)


class Http:
    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port, self.key = host, port, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> bytes:
        try:
            return await self._post(body)
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
        ):  # the server closed an idle keep-alive connection
            self.writer = None
            return await self._post(body)

    async def _post(self, body: bytes) -> bytes:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\nhost: x\r\nx-api-key: %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (EVENT_PATH.encode(), self.key.encode(), len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        data = await self.reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"HTTP {head[:12]!r} {data[:200]!r}")
        return data


def envelope(event_type: str, payload: dict[str, Any], socket_id: str) -> bytes:
    return dumps(
        {
            "action": "sendMessage",
            "event": {"event_type": event_type, "event_payload": payload, "socket_id": socket_id},
        }
    ).encode()


class Conv:
    def __init__(self, config: dict[str, Any], index: int) -> None:
        self.config = config
        keys = config["keys"]
        self.key = keys[index % len(keys)]
        self.http = Http("127.0.0.1", config["http_port"], self.key)
        self.ws: Any = None
        self.socket_id = self.cid = ""
        self.waiter: asyncio.Future[None] | None = None
        self.n = 0

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(
            f"ws://127.0.0.1:{self.config['ws_port']}/dev?apiKey={self.key}",
            compression=self.config.get("compression"),
            max_size=None,
            ping_interval=None,
            open_timeout=120,
        )
        if self.config["kind"] == "echo":
            return
        self.socket_id = loads(await self.ws.recv())["event"]["event_payload"]["socket_id"]
        body = await self.http.post(
            envelope("conversation_start", {"userId": f"u-{uuid.uuid4().hex[:8]}"}, self.socket_id)
        )
        self.cid = loads(body)["conversation_id"]
        asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            if '"bot_message"' in raw[:40] and self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)

    async def trip(self, mode: str) -> None:
        self.n += 1
        if self.config["kind"] == "echo":
            await self.ws.send(
                f'{{"event":{{"event_type":"user_message","event_payload":{{"text":"m{self.n}"}}}}}}'
            )
            await self.ws.recv()
            return
        self.waiter = asyncio.get_running_loop().create_future()
        payload = {
            "conversation_id": self.cid,
            "content": {"type": "text", "text": f"m{self.n}"},
            "client_msg_id": f"c{self.n}",
        }
        body = envelope("user_message", payload, self.socket_id)
        if mode == "http":
            await self.http.post(body)
        else:
            await self.ws.send(body.decode())
        await asyncio.wait_for(self.waiter, 120)


async def client_main() -> None:
    config = json.loads(sys.stdin.readline())
    convs = [Conv(config, config["offset"] + i) for i in range(config["count"])]
    gate = asyncio.Semaphore(20)

    async def open_one(conv: Conv) -> None:
        async with gate:
            await conv.open()

    await asyncio.gather(*(open_one(c) for c in convs))
    print(json.dumps({"ready": len(convs)}), flush=True)
    loop = asyncio.get_running_loop()
    while (line := await loop.run_in_executor(None, sys.stdin.readline)).strip() not in ("", "quit"):
        phase = json.loads(line)
        samples: list[float] = []
        errors: list[str] = []

        async def run(
            conv: Conv,
            phase: dict[str, Any] = phase,
            samples: list[float] = samples,
            errors: list[str] = errors,
        ) -> None:  # (bound here: ruff's B023)
            while time.time() < phase["end"]:
                began = time.perf_counter()
                try:
                    await conv.trip(phase["mode"])
                except Exception as exc:  # noqa: BLE001 -- counted, shown, and the run goes on
                    errors.append(repr(exc)[:200])
                    await asyncio.sleep(0.2)
                    continue
                if phase["start"] <= time.time() <= phase["end"]:
                    samples.append(time.perf_counter() - began)

        await asyncio.gather(*(run(c) for c in convs))
        print(json.dumps({"samples": samples, "errors": errors[:5], "error_count": len(errors)}), flush=True)


# ---------------------------------------------------------------------------------------------------------
# the orchestrator


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except OSError:
            continue  # a thread that just ended
    return total


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[str]
    ws_port: int
    http_port: int
    keys: list[str]
    kind: str = "chat"
    log: Any = None

    def stop(self) -> float:
        """SIGTERM; returns the seconds it took to exit."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - began


def start_child(
    name: str, cmd: list[str], env: dict[str, str], keys: list[str], kind: str = "chat"
) -> Server:
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 -- lives as long as the server
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if match := re.search(r"listening ws=(\d+) http=(\d+)", line):
            return Server(name, proc, int(match.group(1)), int(match.group(2)), keys, kind, log)
        if match := READY.search(line):
            port = int(match.group(2))
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return Server(name, proc, port, port, keys, kind, log)
        if time.monotonic() > deadline:
            break
    log.seek(0)
    raise SystemExit(f"{name} did not start:\n{log.read()[-3000:]}")


def start_gateway(
    name: str,
    workdir: Path,
    *,
    synchronous: str = "NORMAL",
    shipped: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Server:
    keys = ["cck_bench_" + secrets.token_urlsafe(24) for _ in range(20)]
    cmd = serve_command(f"sqlite:///{workdir / f'{uuid.uuid4().hex[:8]}.db'}", keys)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPTIVATE_")}
    env.update(COLUMNS="200", CAPTIVATE_SQLITE_SYNCHRONOUS=synchronous, **LOADED)
    if shipped:  # the defaults: rate limits, access log, JSON logs, metrics
        env.update(CAPTIVATE_LOG_FORMAT="json", CAPTIVATE_ACCESS_LOG="true", CAPTIVATE_LOG_LEVEL="info")
    else:
        env.update(QUIET, **UNLIMITED)
    env.update(extra_env or {})
    return start_child(name, cmd, env, keys)


def start_floor(workdir: Path, synchronous: str = "NORMAL") -> Server:
    key = "floor_" + secrets.token_hex(8)
    db = workdir / f"floor-{uuid.uuid4().hex[:8]}.db"
    return start_child(
        f"floor {synchronous}",
        [sys.executable, __file__, "--serve-floor", str(db), synchronous, key],
        dict(os.environ),
        [key],
    )


def start_echo() -> Server:
    return start_child(
        "bare echo", [sys.executable, __file__, "--serve-echo"], dict(os.environ), ["-"], "echo"
    )


@dataclass
class Cell:
    server: str
    mode: str
    conversations: int
    trips_per_s: float = 0.0
    cpu_ms: float = 0.0
    switches: float = 0.0
    p50_ms: float = 0.0
    errors: int = 0
    kib_per_conn: float = 0.0
    notes: list[str] = field(default_factory=list)


def measure(server: Server, conversations: int, modes: list[str], args: argparse.Namespace) -> list[Cell]:
    clients = []
    processes = min(args.clients, conversations)
    rss0 = rss_kib(server.proc.pid)
    for index in range(processes):
        count = conversations // processes + (1 if index < conversations % processes else 0)
        offset = sum(
            conversations // processes + (1 if i < conversations % processes else 0) for i in range(index)
        )
        proc = subprocess.Popen(
            [sys.executable, __file__, "--client"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdin is not None
        proc.stdin.write(
            json.dumps(
                {
                    "ws_port": server.ws_port,
                    "http_port": server.http_port,
                    "keys": server.keys,
                    "kind": server.kind,
                    "count": count,
                    "offset": offset,
                    "compression": args.client_compression,
                }
            )
            + "\n"
        )
        proc.stdin.flush()
        clients.append(proc)

    def read_all() -> list[dict[str, Any]]:
        out = []
        for proc in clients:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f"a client of {server.name} failed")
            out.append(json.loads(line))
        return out

    read_all()
    time.sleep(0.5)
    kib = (rss_kib(server.proc.pid) - rss0) / conversations
    cells = []
    for mode in modes:
        start = time.time() + args.warmup
        end = start + args.seconds
        for proc in clients:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"mode": mode, "start": start, "end": end}) + "\n")
            proc.stdin.flush()
        time.sleep(max(0.0, start - time.time()))
        cpu0, sw0 = proc_cpu(server.proc.pid), proc_switches(server.proc.pid)
        spy = None
        if args.profile and server.name.startswith("gateway"):
            out = Path(args.profile) / f"{server.name.split()[0]}-{mode}-{conversations}.txt"
            spy = subprocess.Popen(
                [
                    shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--pid",
                    str(server.proc.pid),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--gil",
                    "--output",
                    str(out),
                    "--duration",
                    str(int(args.seconds)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        time.sleep(max(0.0, end - time.time()))
        if spy is not None:
            spy.wait(60)
        cpu1, sw1 = proc_cpu(server.proc.pid), proc_switches(server.proc.pid)
        results = read_all()
        samples = sorted(s for r in results for s in r["samples"])
        trips = max(1, len(samples))
        cell = Cell(
            server.name,
            mode if server.kind != "echo" else "echo",
            conversations,
            trips_per_s=len(samples) / args.seconds,
            cpu_ms=(cpu1 - cpu0) * 1000 / trips,
            switches=(sw1 - sw0) / trips,
            p50_ms=samples[len(samples) // 2] * 1000 if samples else float("nan"),
            errors=sum(r["error_count"] for r in results),
            kib_per_conn=kib,
        )
        for r in results:
            cell.notes += r["errors"]
        cells.append(cell)
    for proc in clients:
        assert proc.stdin is not None
        proc.stdin.write("quit\n")
        proc.stdin.flush()
    for proc in clients:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return cells


def idle_kib(server: Server, sockets: int, compression: str | None) -> float:
    """RSS growth per idle WebSocket: ``sockets`` WebSockets opened (each got its ``socket_connected``, if
    the server sends one), nothing else; the server's RSS before and after, per socket."""

    async def run() -> float:
        from websockets.asyncio.client import connect

        rss0 = rss_kib(server.proc.pid)
        gate = asyncio.Semaphore(50)
        opened: list[Any] = []

        async def one() -> None:
            async with gate:
                ws = await connect(
                    f"ws://127.0.0.1:{server.ws_port}/dev?apiKey={server.keys[0]}",
                    compression=compression,
                    ping_interval=None,
                    open_timeout=120,
                )
                if server.kind != "echo":
                    await ws.recv()
                opened.append(ws)

        await asyncio.gather(*(one() for _ in range(sockets)))
        await asyncio.sleep(0.5)
        kib = (rss_kib(server.proc.pid) - rss0) / sockets
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
        await asyncio.sleep(0.5)
        return kib

    return asyncio.run(run())


def table(cells: list[Cell]) -> str:
    floors = {(c.mode, c.conversations): c for c in cells if c.server == "floor NORMAL"}
    echo = {c.conversations: c for c in cells if c.server == "bare echo"}
    head = (
        f"{'server':<34} {'mode':<8} {'conv':>5} {'rt/s':>7} {'xfloor':>7} {'CPU ms':>7} {'xfloor':>7} "
        f"{'cs/trip':>7} {'p50 ms':>8} {'xfloor':>7} {'xecho':>6} {'KiB/conn':>8} {'err':>4}"
    )
    lines = [head, "-" * len(head)]
    for c in cells:
        f = floors.get((c.mode, c.conversations))
        e = echo.get(c.conversations)

        def ratio(a: float, b: float | None) -> str:
            return f"{a / b:7.2f}" if b else f"{'':>7}"

        lines.append(
            f"{c.server:<34} {c.mode:<8} {c.conversations:>5} {c.trips_per_s:>7.0f} {ratio(c.trips_per_s, f and f.trips_per_s)} "
            f"{c.cpu_ms:>7.3f} {ratio(c.cpu_ms, f and f.cpu_ms)} {c.switches:>7.1f} {c.p50_ms:>8.2f} "
            f"{ratio(c.p50_ms, f and f.p50_ms)} {ratio(c.p50_ms, e and e.p50_ms)[1:]} {c.kib_per_conn:>8.1f} {c.errors:>4}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--modes", nargs="+", default=["ws", "http"], choices=["ws", "http"])
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["echo", "floor", "gateway", "shipped", "full"],
        choices=["echo", "floor", "gateway", "shipped", "full", "deflate"],
        help="shipped: the gateway as shipped (rate limits, access log, JSON logs) at the largest"
        " count; full: floor and gateway with synchronous=FULL at the largest count; deflate:"
        " the gateway with ws_per_message_deflate on and the clients offering it",
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument(
        "--idle-sockets",
        type=int,
        default=1000,
        help="before a server's cells: open this many idle WebSockets and print the RSS per socket (0: skip)",
    )
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy record the gateway's cells into DIR (raw stacks;"
        " figures measured while profiling are inflated)",
    )
    parser.add_argument(
        "--baseline-src",
        metavar="DIR",
        help="also measure the gateway from another checkout's src directory (e.g. ../main/src)",
    )
    parser.add_argument("--client-compression", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", nargs=3, metavar=("DB", "SYNC", "KEY"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    if args.client:
        run(client_main())
        return
    if args.serve_floor:
        asyncio.run(create_schema(args.serve_floor[0]))
        run(serve_floor(*args.serve_floor))
        return
    if args.serve_echo:
        run(serve_echo())
        return

    largest = max(args.conversations)
    workdir = Path(tempfile.mkdtemp(prefix="floor-bench-"))
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the run; {args.clients} client"
        f" processes; warm-up {args.warmup:g} s, measured {args.seconds:g} s per cell",
        flush=True,
    )
    plan: list[tuple[Callable[[], Server], list[int], list[str]]] = []
    if "echo" in args.servers:
        plan.append((start_echo, args.conversations, ["ws"]))
    if "floor" in args.servers:
        plan.append((lambda: start_floor(workdir), args.conversations, args.modes))
    if "gateway" in args.servers:
        plan.append((lambda: start_gateway("gateway (limits off)", workdir), args.conversations, args.modes))
    if args.baseline_src:  # the same gateway rows for another checkout's code, in the same run
        source = str(Path(args.baseline_src).resolve())
        plan.append(
            (
                lambda: start_gateway(
                    f"baseline {Path(source).parent.name}/{Path(source).name} (limits off)",
                    workdir,
                    extra_env={"PYTHONPATH": source},
                ),
                args.conversations,
                args.modes,
            )
        )
    if "shipped" in args.servers:
        plan.append(
            (lambda: start_gateway("gateway as shipped", workdir, shipped=True), [largest], args.modes)
        )
        if args.baseline_src:  # the shipped row for the other checkout's code too
            plan.append(
                (
                    lambda: start_gateway(
                        f"baseline {Path(source).parent.name}/{Path(source).name} as shipped",
                        workdir,
                        shipped=True,
                        extra_env={"PYTHONPATH": source},
                    ),
                    [largest],
                    args.modes,
                )
            )
    if "deflate" in args.servers:
        plan.append(
            (
                lambda: start_gateway(
                    "gateway, deflate on",
                    workdir,
                    extra_env={"CAPTIVATE_WS_PER_MESSAGE_DEFLATE": "true"},
                ),
                [largest],
                args.modes,
            )
        )
    if "full" in args.servers:
        plan.append((lambda: start_floor(workdir, "FULL"), [largest], args.modes))
        plan.append(
            (
                lambda: start_gateway("gateway FULL (limits off)", workdir, synchronous="FULL"),
                [largest],
                args.modes,
            )
        )
    cells: list[Cell] = []
    idle: list[tuple[str, float]] = []
    stops: list[str] = []
    try:
        for start, counts, modes in plan:
            if args.idle_sockets:  # on a server of its own: a fresh heap, with no freed memory to reuse
                server = start()
                if "FULL" not in server.name:
                    compression = "deflate" if server.name == "gateway, deflate on" else None
                    idle.append((server.name, idle_kib(server, args.idle_sockets, compression)))
                server.stop()
            server = start()
            try:
                for count in counts:
                    if server.name == "gateway, deflate on":
                        args.client_compression = "deflate"
                    print(f"  {server.name}: {count} conversations", flush=True)
                    cells += measure(server, count, modes, args)
                    args.client_compression = None
            finally:
                stops.append(f"{server.name}: stopped {server.stop():.1f} s after SIGTERM")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(cells))
    for c in cells:
        if c.errors:
            print(f"  {c.server} {c.mode} {c.conversations}: {c.errors} errors, e.g. {c.notes[:2]}")
    print(
        "\nrt/s: round trips per second; CPU ms: server CPU (all threads) per trip; cs/trip: the server's context"
        " switches (voluntary + involuntary) per trip; xfloor: ratio to the floor (NORMAL) at the same count and"
        " mode; xecho: p50 over the bare echo's p50; KiB/conn: server RSS growth per connection."
    )
    if idle:
        print(f"\nKiB per idle WebSocket ({args.idle_sockets} opened, nothing sent; server RSS growth):")
        for name, kib in idle:
            print(f"  {name:<34} {kib:6.1f}")
    print("\n".join(stops))
    print(
        f"load average {os.getloadavg()[0]:.1f} after the run (the machine is shared: compare ratios, not absolutes)"
    )


if __name__ == "__main__":
    main()
