"""Round-trip latency of the gateway: ``user_message`` -> ``bot_message``, against a bare-WebSocket floor.

A benchmark, not a test. Run from the repository root::

    .venv/bin/python bench/roundtrip.py                        # 300 measured messages, 50 warm-up
    .venv/bin/python bench/roundtrip.py --messages 1000 --warmup 100
    .venv/bin/python bench/roundtrip.py --synchronous FULL NORMAL   # one gateway per SQLite level
    .venv/bin/python bench/roundtrip.py --profile              # + py-spy profile (pip install py-spy)
    .venv/bin/python bench/roundtrip.py --profile --mode ws-only   # profile one transport alone

What it measures, all on loopback, all sequential (one message in flight at a time):

1. **floor** — a bare ``websockets`` echo server (asyncio API) in a *separate process*: the time to send a
   frame the size of a ``user_message`` envelope and get it back. Also, for context only, an httpx
   keep-alive POST against a minimal raw-asyncio HTTP responder in that process (``http floor``). Both are
   measured before and after the gateway phase and pooled (both p50s are printed: a shared, noisy machine
   drifts).
2. **gateway** — ``captivate-chat serve`` as a subprocess (fresh temp SQLite file, a generated
   ``--api-key``, ``CAPTIVATE_ACCESS_LOG=false``, ``CAPTIVATE_LOG_LEVEL=warning``, rate limits off). One
   WebSocket and one conversation per mode; the timer runs from sending the ``user_message`` envelope until
   the matching ``bot_message`` (the demo agent's ``You said: ...``) arrives on the WebSocket:

   - ``http+ws``: the envelope is POSTed to ``/api/custom-channel/sockets/message`` by a kept-alive
     ``httpx.AsyncClient`` (what the npm client 7.0.0 does), the reply comes on the WebSocket;
   - ``ws-only``: the envelope is sent as a WebSocket text frame (1.x style).

The table gives p50/p99/mean in ms and each p50 divided by the WebSocket echo floor's p50; the goal
(gateway p50 within 10x of the floor) is checked and printed as met or not. A second table breaks the
gateway round trip down: the ``user_message`` echo on the WebSocket (the message is stored and fanned out),
the HTTP response, and what follows the echo (the agent turn and its stored ``bot_message``). A third gives
the CPU time per round trip of the gateway process (all threads, from /proc) and of this client process:
on a small machine they compete for the same cores, and the httpx client is not cheap.

``--compression none`` turns WebSocket permessage-deflate off for the floor and the gateway alike (default:
offered, as browsers and the ``ws`` package do). ``--synchronous LEVEL...`` sets
``CAPTIVATE_SQLITE_SYNCHRONOUS`` for the gateway (default: not set, so the gateway's own default applies;
the label shows it, read from ``Settings``);
several levels run one gateway each, in one run. ``--profile`` attaches ``py-spy record`` to the gateway for the gateway phase
(needs ptrace rights: root, or ``kernel.yama.ptrace_scope=0``) and prints the top cost centres per thread;
the raw collapsed stacks are saved (open them in https://www.speedscope.app). Latencies measured while
profiling are inflated by the sampling, so compare them only with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx
import websockets
from benchkit import READY, serve_command
from websockets.asyncio.client import connect

EVENT_PATH = "/api/custom-channel/sockets/message"
ECHO_READY = re.compile(r"echo ws=(\d+) http=(\d+)")
GOAL_RATIO = 10.0
W = 58  # width of the name column
MODES = ("http+ws", "ws-only")
RECV_TIMEOUT = 15.0
WS_OPTIONS: dict[str, object] = {"max_size": None}  # + compression=None with --compression none


# ---------------------------------------------------------------------------------------------------------
# the floor: a bare websockets echo server (and a minimal HTTP responder), run in a child process


class _HttpResponder(asyncio.Protocol):
    """Just enough HTTP/1.1 keep-alive to answer every POST with a small JSON body (no framework)."""

    BODY = b'{"status":"success"}'
    RESPONSE = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(BODY)).encode()
        + b"\r\n\r\n"
        + BODY
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in self.buffer[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            self.transport.write(self.RESPONSE)  # type: ignore[attr-defined]


async def _serve_echo() -> None:
    from websockets.asyncio.server import serve

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    loop = asyncio.get_running_loop()
    http_server = await loop.create_server(_HttpResponder, "127.0.0.1", 0)
    async with serve(echo, "127.0.0.1", 0) as ws_server:
        ws_port = next(iter(ws_server.sockets)).getsockname()[1]
        http_port = http_server.sockets[0].getsockname()[1]
        print(f"echo ws={ws_port} http={http_port}", flush=True)
        await ws_server.serve_forever()


# ---------------------------------------------------------------------------------------------------------
# child processes


class Child:
    """A child process whose stdout/stderr are drained by threads; ready when a line matches ``ready``."""

    def __init__(self, cmd: list[str], env: dict[str, str], ready: re.Pattern[str]) -> None:
        self.cmd, self.env, self.ready_pattern = cmd, env, ready
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.match: re.Match[str] | None = None

    def start(self, timeout: float = 30.0) -> Child:
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, cwd=Path.cwd()
        )
        ready = threading.Event()

        def pump(stream, watch: bool) -> None:  # type: ignore[no-untyped-def]
            for line in stream:
                self.lines.append(line)
                if watch and self.match is None:
                    match = self.ready_pattern.search(line)
                    if match:
                        self.match = match
                        ready.set()

        threading.Thread(target=pump, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=pump, args=(self.proc.stderr, False), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.cmd[:4]} did not start:\n" + "".join(self.lines))
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return "".join(self.lines)


# ---------------------------------------------------------------------------------------------------------
# statistics


@dataclass
class Samples:
    name: str
    values_ns: list[int] = field(default_factory=list)

    def add(self, ns: int) -> None:
        self.values_ns.append(ns)

    def _ms(self) -> list[float]:
        return sorted(v / 1e6 for v in self.values_ns)

    @property
    def p50(self) -> float:
        return statistics.median(self._ms())

    @property
    def p99(self) -> float:
        ms = self._ms()
        return ms[max(0, math.ceil(0.99 * len(ms)) - 1)]  # nearest rank

    @property
    def mean(self) -> float:
        return statistics.fmean(self._ms())


def envelope(event_type: str, payload: dict, socket_id: str | None) -> dict:  # type: ignore[type-arg]
    event = {"event_type": event_type, "event_payload": payload}
    if socket_id is not None:
        event["socket_id"] = socket_id
    return {"action": "sendMessage", "event": event}


def user_message(conversation_id: str, socket_id: str, i: int) -> tuple[str, str, str]:
    """(envelope JSON, client_msg_id, the demo agent's expected reply text) for message ``i``."""
    client_msg_id = str(uuid.uuid4())
    text = f"bench message {i}: how long does one round trip through the gateway take?"
    body = json.dumps(
        envelope(
            "user_message",
            {
                "conversation_id": conversation_id,
                "type": "message_create",
                "client_msg_id": client_msg_id,
                "content": {"type": "text", "text": text},
            },
            socket_id,
        )
    )
    return body, client_msg_id, f"You said: {text}"


# ---------------------------------------------------------------------------------------------------------
# floor measurements


def per_trip(wall0: float, cpu0: float, messages: int) -> tuple[float, float]:
    """(wall ms, this process's CPU ms) per round trip, from ``perf_counter()`` and ``process_time()`` marks."""
    return (time.perf_counter() - wall0) * 1000 / messages, (time.process_time() - cpu0) * 1000 / messages


async def measure_echo(
    ws_port: int, http_port: int, messages: int, warmup: int, cpu: dict[str, tuple[float, float]]
) -> tuple[Samples, Samples, int]:
    """The floors; ``cpu[name]`` gets (wall ms, this process's CPU ms) per measured round trip."""
    ws_floor, http_floor = Samples("ws echo floor"), Samples("http floor (httpx POST)")
    frame, _, _ = user_message(str(uuid.uuid4()), uuid.uuid4().hex, 0)
    async with connect(f"ws://127.0.0.1:{ws_port}/", **WS_OPTIONS) as ws:
        for i in range(warmup + messages):
            if i == warmup:
                wall0, cpu0 = time.perf_counter(), time.process_time()
            started = time.perf_counter_ns()
            await ws.send(frame)
            reply = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
            elapsed = time.perf_counter_ns() - started
            json.loads(reply)  # the gateway runs parse the replies too; same client-side work here
            if i >= warmup:
                ws_floor.add(elapsed)
        cpu["ws echo floor"] = per_trip(wall0, cpu0, messages)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=RECV_TIMEOUT) as http:
        for i in range(warmup + messages):
            if i == warmup:
                wall0, cpu0 = time.perf_counter(), time.process_time()
            started = time.perf_counter_ns()
            response = await http.post(
                EVENT_PATH, content=frame, headers={"content-type": "application/json"}
            )
            response.json()
            elapsed = time.perf_counter_ns() - started
            if i >= warmup:
                http_floor.add(elapsed)
        cpu["http floor (httpx POST)"] = per_trip(wall0, cpu0, messages)
    return ws_floor, http_floor, len(frame.encode())


# ---------------------------------------------------------------------------------------------------------
# gateway measurements


@dataclass
class ModeResult:
    roundtrip: Samples
    echo: Samples  # user_message stored and echoed back on the WebSocket
    after_echo: Samples  # echo -> bot_message: the agent turn
    http: Samples | None  # the POST's response (http+ws only)
    gateway_cpu_ms: float = math.nan  # gateway process CPU (all threads, user+sys) per measured round trip
    gateway_sys_ms: float = math.nan  # of which in the kernel (sys)
    client_cpu_ms: float = math.nan  # this process's CPU per measured round trip
    wall_ms: float = math.nan  # wall time per measured round trip


def process_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, sys) CPU seconds of a process, all threads (Linux /proc); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, ValueError, IndexError):
        return math.nan, math.nan


async def next_event(ws, conversation_id=None):  # type: ignore[no-untyped-def]
    """The next platform event (of ``conversation_id`` if given): (arrival ns, event_type, payload)."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
        arrived = time.perf_counter_ns()
        event = json.loads(raw).get("event") or {}
        payload = event.get("event_payload") or {}
        event_type = event.get("event_type", "")
        if event_type == "general_error":
            raise RuntimeError(f"gateway sent general_error: {payload}")
        if conversation_id is None or payload.get("conversation_id") == conversation_id:
            return arrived, event_type, payload


async def measure_gateway_mode(
    mode: str, http_url: str, ws_url: str, key: str, messages: int, warmup: int, gateway_pid: int
) -> ModeResult:
    via_http = mode == "http+ws"
    result = ModeResult(
        Samples(mode),
        Samples(f"{mode}: user_message echo"),
        Samples(f"{mode}: echo -> bot_message"),
        Samples(f"{mode}: HTTP response") if via_http else None,
    )
    headers = {"x-api-key": key, "content-type": "application/json", "accept": "application/json"}
    async with (
        connect(f"{ws_url}/dev?apiKey={key}", **WS_OPTIONS) as ws,
        httpx.AsyncClient(base_url=http_url, headers=headers, timeout=RECV_TIMEOUT) as http,
    ):
        _, event_type, payload = await next_event(ws)
        assert event_type == "socket_connected", event_type
        socket_id = payload["socket_id"]

        async def post(body: str) -> int:
            response = await http.post(EVENT_PATH, content=body)
            if response.status_code != 200:
                raise RuntimeError(f"POST answered {response.status_code}: {response.text}")
            return time.perf_counter_ns()

        start = json.dumps(envelope("conversation_start", {"userId": f"bench-{mode}"}, socket_id))
        if via_http:
            await post(start)
        else:
            await ws.send(start)
        while True:
            _, event_type, payload = await next_event(ws)
            if event_type == "conversation_start_success":
                conversation_id = payload["conversation_id"]
                break

        for i in range(warmup + messages):
            if i == warmup:
                cpu_gateway, cpu_client, wall = (
                    process_cpu_seconds(gateway_pid),
                    time.process_time(),
                    time.perf_counter(),
                )
            body, client_msg_id, expected = user_message(conversation_id, socket_id, i)
            echoed_at = None
            started = time.perf_counter_ns()
            if via_http:
                posting = asyncio.create_task(post(body))
            else:
                await ws.send(body)
            while True:
                arrived, event_type, payload = await next_event(ws, conversation_id)
                if event_type == "user_message" and payload.get("client_msg_id") == client_msg_id:
                    echoed_at = arrived
                elif event_type == "bot_message" and (payload.get("content") or {}).get("text") == expected:
                    break
            answered_at = await posting if via_http else None
            if i < warmup:
                continue
            result.roundtrip.add(arrived - started)
            if echoed_at is not None:
                result.echo.add(echoed_at - started)
                result.after_echo.add(arrived - echoed_at)
            if result.http is not None and answered_at is not None:
                result.http.add(answered_at - started)
        user, sys_ = process_cpu_seconds(gateway_pid)
        result.gateway_cpu_ms = (user + sys_ - sum(cpu_gateway)) * 1000 / messages
        result.gateway_sys_ms = (sys_ - cpu_gateway[1]) * 1000 / messages
        result.client_cpu_ms = (time.process_time() - cpu_client) * 1000 / messages
        result.wall_ms = (time.perf_counter() - wall) * 1000 / messages
    return result


# ---------------------------------------------------------------------------------------------------------
# profiling (py-spy, attached to the running gateway)


class Profiler:
    """``py-spy record`` attached to the gateway: CPU samples only (threads waiting in epoll, in a queue or in
    a blocking syscall are not sampled), non-blocking so the gateway is not paused at every sample."""

    def __init__(self, pid: int, out: Path, rate: int) -> None:
        self.out, self.rate = out, rate
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.cmd = [
            exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
            "--threads",
            "--nonblocking",
        ]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.0)  # let py-spy attach before the traffic starts
        if self.proc.poll() is not None:
            out = self.proc.stdout.read() if self.proc.stdout else ""
            raise SystemExit(
                f"py-spy failed (attaching needs ptrace rights: root or kernel.yama.ptrace_scope=0):\n{out}"
            )

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_LOOP_LEAVES = ("Runner.run (runners.py", "run_until_complete (", "run_forever (", "Server.serve (")
"""A busy main thread whose Python leaf is the loop's entry point is running the loop's own (uvloop, C) code:
socket reads/writes, epoll bookkeeping, callback dispatch, cross-thread wake-ups."""
_SKIP_INCLUSIVE = (
    "<module>",
    "_run_code",
    "_run_module_as_main",
    "Typer",
    "Command.",
    "Context.invoke",
    "_main (",
    "get_callback",
    "serve (cli.py",
    "main (cli.py",
    "run (serve.py",
    "Server.run",
    "Runner.run",
    "Thread._bootstrap",
    "Thread.run",
    "_worker (thread.py",
    "WorkItem.run",
)


def short(frame: str) -> str:
    """``fn (path/to/file.py:12)`` -> ``fn (file.py:12)``."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    name = Path(match["file"]).name
    return f"{match['fn']} ({name}:{match['line']})" if match["line"] else f"{match['fn']} ({name})"


def summarize_profile(path: Path, rate: int, seconds: float, round_trips: int, top: int = 12) -> str:
    """Per thread: CPU share, top self (leaf) frames and top inclusive functions, as CPU ms per round trip."""
    self_time: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = re.sub(r"^thread \(\d+\): ", "", frames[0]) if frames[0].startswith("thread (") else "?"
        code = [short(f) for f in frames if not f.startswith(("process ", "thread ("))]
        leaf = code[-1] if code else "?"
        if any(leaf.startswith(marker) for marker in _LOOP_LEAVES):
            leaf = "<event loop internals (uvloop C): socket I/O, scheduling, wake-ups>"
        totals[thread] += n
        self_time[thread][leaf] += n
        for fn in {re.sub(r":\d+\)$", ")", f) for f in code}:
            if not any(skip in fn for skip in _SKIP_INCLUSIVE):
                inclusive[thread][fn] += n

    def ms_per_trip(samples: int) -> float:
        return samples * 1000 / rate / round_trips

    all_samples = sum(totals.values())
    head = (
        f"  sampled {seconds:.1f} s of traffic; {all_samples} CPU samples = {ms_per_trip(all_samples):.2f} ms of gateway CPU"
        " per round trip (all measured modes, warm-up included; sampled, so approximate)"
    )
    lines = [head]
    for thread, total in totals.most_common():
        if total < 0.01 * all_samples:
            continue
        lines.append(
            f"\n  thread {thread}: on CPU {total / (rate * seconds):.0%} of the time, "
            f"{ms_per_trip(total):.2f} ms per round trip"
        )
        lines.append(f"    {'self (leaf frame)':<92} {'% thread':>8} {'ms/trip':>8}")
        for frame, n in self_time[thread].most_common(top):
            lines.append(f"      {frame[:90]:<90} {n / total:8.1%} {ms_per_trip(n):8.3f}")
        lines.append(f"    {'inclusive (function and its callees)':<92} {'% thread':>8} {'ms/trip':>8}")
        for fn, n in inclusive[thread].most_common(top):
            lines.append(f"      {fn[:90]:<90} {n / total:8.1%} {ms_per_trip(n):8.3f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# the run


def filesystem_of(path: Path) -> str:
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def gateway_env(synchronous: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPTIVATE_")}
    env.update(COLUMNS="200", CAPTIVATE_ACCESS_LOG="false", CAPTIVATE_LOG_LEVEL="warning")
    # A bench sends as fast as round trips allow, far over the per-socket/per-key rate limits (0 disables them).
    env.update(
        CAPTIVATE_RATE_PER_SOCKET="0", CAPTIVATE_RATE_PER_KEY="0", CAPTIVATE_STARTS_PER_MINUTE_PER_KEY="0"
    )
    if synchronous is not None:
        env["CAPTIVATE_SQLITE_SYNCHRONOUS"] = synchronous
    return env


def default_synchronous() -> str:
    """The gateway's own default ``sqlite_synchronous`` (for labels only)."""
    try:
        from captivate_chat_api.server.settings import Settings

        return str(Settings.model_fields["sqlite_synchronous"].default)
    except (ImportError, KeyError, AttributeError):  # another layout: do not guess
        return "?"


@dataclass
class GatewayRun:
    label: str
    results: dict[str, ModeResult]
    profile: Path | None = None
    profile_seconds: float = math.nan


@dataclass
class Gateway:
    """A running ``captivate-chat serve`` child with one generated API key."""

    child: Child
    key: str
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def start_gateway(database: Path, synchronous: str | None = None) -> Gateway:
    """``captivate-chat serve`` on a free loopback port with a fresh SQLite file and the bench env."""
    key = "cck_bench_" + secrets.token_urlsafe(24)
    cmd = serve_command(f"sqlite:///{database}", [key])
    child = Child(cmd, gateway_env(synchronous), READY).start()
    assert child.match is not None and child.proc is not None
    return Gateway(child, key, int(child.match.group(2)))


def run_gateway(args: argparse.Namespace, synchronous: str | None, db_dir: Path) -> GatewayRun:
    started = start_gateway(db_dir / f"gateway-{synchronous or 'default'}.db", synchronous)
    gateway, key, http_url, ws_url = started.child, started.key, started.http_url, started.ws_url
    assert gateway.proc is not None
    profiler = profile_path = None
    try:
        if args.profile:
            profile_path = (
                Path(args.profile_dir) / f"roundtrip-profile-{synchronous or 'default'}-{os.getpid()}.txt"
            )
            profiler = Profiler(gateway.proc.pid, profile_path, args.profile_rate)
            profiler.start()
        run = GatewayRun(f"sync={synchronous or default_synchronous() + '(default)'}", {}, profile_path)
        traffic_started = time.monotonic()
        for mode in args.mode or MODES:
            run.results[mode] = asyncio.run(
                measure_gateway_mode(
                    mode, http_url, ws_url, key, args.messages, args.warmup, gateway.proc.pid
                )
            )
        if profiler is not None:
            run.profile_seconds = time.monotonic() - traffic_started
            profiler.stop()
    except BaseException:
        sys.stderr.write("gateway output:\n" + gateway.output())
        raise
    finally:
        if profiler is not None and profiler.proc is not None and profiler.proc.poll() is None:
            profiler.proc.kill()
        gateway.stop()
    problems = [l for l in gateway.lines if "ERROR" in l or "Traceback" in l]
    if problems:
        sys.stderr.write("gateway logged errors:\n" + "".join(problems[:20]))
    return run


def row(name: str, s: Samples, floor: float | None) -> str:
    ratio = f"{s.p50 / floor:8.1f}x" if floor else f"{'':>9}"
    return f"  {name:<{W}} {s.p50:8.3f} {s.p99:8.3f} {s.mean:8.3f} {ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=300, help="measured round trips per mode (default 300)"
    )
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured round trips first (default 50)")
    parser.add_argument(
        "--synchronous",
        nargs="+",
        type=str.upper,
        choices=("OFF", "NORMAL", "FULL", "EXTRA"),
        help="CAPTIVATE_SQLITE_SYNCHRONOUS for the gateway; several levels run one gateway each",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        action="append",
        help="gateway mode(s) to run (repeatable; default both), e.g. to profile one alone",
    )
    parser.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="WebSocket permessage-deflate offered by the client, floor and gateway alike "
        "(default deflate, as browsers and the ws package do)",
    )
    parser.add_argument("--db-dir", help="directory for the temp SQLite file (default: the system temp dir)")
    parser.add_argument("--profile", action="store_true", help="profile the gateway phase with py-spy")
    parser.add_argument(
        "--profile-rate", type=int, default=250, help="py-spy samples per second (default 250)"
    )
    parser.add_argument("--profile-dir", default=tempfile.gettempdir(), help="where the raw profile is saved")
    parser.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        asyncio.run(_serve_echo())
        return
    if args.messages < 1 or args.warmup < 0:
        parser.error("--messages must be >= 1 and --warmup >= 0")

    import uvicorn

    if args.compression == "none":
        WS_OPTIONS["compression"] = None

    tmp = Path(tempfile.mkdtemp(prefix="captivate-bench-", dir=args.db_dir))
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, websockets {websockets.__version__}, "
        f"uvicorn {uvicorn.__version__}, httpx {httpx.__version__}"
    )
    print(
        f"{args.messages} measured round trips per mode after {args.warmup} warm-up, sequential, loopback, "
        f"WebSocket compression: {args.compression}"
    )
    print(f"SQLite file in {tmp} ({filesystem_of(tmp)})")

    # The floor is measured before and after the gateway phase and pooled, so that drift of a noisy machine
    # during the run shows (both p50s are printed) and weighs on the ratio less.
    echo = Child(
        [sys.executable, str(Path(__file__).resolve()), "--serve-echo"], dict(os.environ), ECHO_READY
    ).start()
    runs: list[GatewayRun] = []
    floor_cpu: dict[str, tuple[float, float]] = {}
    try:
        assert echo.match is not None
        ports = int(echo.match.group(1)), int(echo.match.group(2))
        ws_before, http_before, frame_bytes = asyncio.run(
            measure_echo(*ports, args.messages, args.warmup, floor_cpu)
        )
        print(f"echo frame: {frame_bytes} bytes (a user_message envelope)")
        for level in args.synchronous or [None]:
            runs.append(run_gateway(args, level, tmp))
        ws_after, http_after, _ = asyncio.run(measure_echo(*ports, args.messages, args.warmup, {}))
    finally:
        echo.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    ws_floor = Samples(
        f"ws echo floor (p50 before {ws_before.p50:.3f}, after {ws_after.p50:.3f})",
        ws_before.values_ns + ws_after.values_ns,
    )
    http_floor = Samples(
        f"http floor (httpx POST, p50 before {http_before.p50:.3f}, after {http_after.p50:.3f})",
        http_before.values_ns + http_after.values_ns,
    )

    floor = ws_floor.p50
    print(
        "\nround trip: user_message sent -> bot_message received"
        + (" (PROFILING: inflated)" if args.profile else "")
    )
    print(f"  {'mode':<{W}} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'p50/floor':>9}")
    print(row(ws_floor.name, ws_floor, floor))
    print(row(http_floor.name, http_floor, floor))
    verdicts = []
    for run in runs:
        for mode, result in run.results.items():
            print(row(f"{mode} [{run.label}]", result.roundtrip, floor))
            ratio = result.roundtrip.p50 / floor
            verdicts.append(
                f"  {mode} [{run.label}]: p50 {ratio:.1f}x floor -> "
                + ("MET" if ratio <= GOAL_RATIO else "NOT MET")
            )
    print("  (the http floor is context only: an httpx POST to a bare asyncio HTTP responder)")
    print(
        f"\ngoal: gateway p50 within {GOAL_RATIO:g}x of the WebSocket echo floor p50 ({floor:.3f} ms, pooled)"
    )
    print("\n".join(verdicts))

    print("\nbreakdown (same messages; times from sending)")
    print(f"  {'part':<{W}} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for run in runs:
        for result in run.results.values():
            for part in [result.echo, result.after_echo] + ([result.http] if result.http else []):
                if part.values_ns:
                    print(row(f"{part.name} [{run.label}]", part, None).rstrip())

    print(
        "\nCPU per round trip, mean over the measured messages (user+sys from /proc; 10 ms ticks over the run)"
    )
    print(f"  {'mode':<{W}} {'wall ms':>8} {'gw CPU':>8} {'(of which sys)':>14} {'bench CPU':>9}")
    for name, (wall, cpu) in floor_cpu.items():
        print(f"  {name:<{W}} {wall:8.3f} {'-':>8} {'':>14} {cpu:9.3f}")
    for run in runs:
        for mode, result in run.results.items():
            print(
                f"  {mode + ' [' + run.label + ']':<{W}} {result.wall_ms:8.3f} {result.gateway_cpu_ms:8.3f} "
                f"{'(' + format(result.gateway_sys_ms, '.3f') + ')':>14} {result.client_cpu_ms:9.3f}"
            )
    print(
        f"  ({os.cpu_count()} CPUs: the bench client, the gateway's event loop and its SQLite threads share them)"
    )
    if importlib.util.find_spec("sniffio") is None:
        print(
            "  note: sniffio is not installed, so httpcore retries `import sniffio` (a failed sys.path scan) several"
            " times per request (encode/httpcore#1103): the httpx client's CPU above is inflated by that."
        )

    for run in runs:
        if run.profile is None:
            continue
        print(
            f"\nprofile of the gateway [{run.label}]: py-spy CPU samples at {args.profile_rate} Hz, "
            f"raw stacks in {run.profile}"
        )
        if run.profile.exists():
            trips = len(run.results) * (args.messages + args.warmup)
            print(summarize_profile(run.profile, args.profile_rate, run.profile_seconds, trips))
        else:
            print("  (py-spy wrote no profile)")


if __name__ == "__main__":
    main()
