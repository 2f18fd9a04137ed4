"""Client CPU and round trip: our Python SDK against the npm client ``captivate-chat-api@7.0.0``, one gateway.

A benchmark, not a test. Run from the repository root (needs node >= 18 and npm for the npm client)::

    .venv/bin/python bench/client_cpu.py                       # 200 measured messages, 30 warm-up, 2 rounds
    .venv/bin/python bench/client_cpu.py --messages 500 --rounds 3
    .venv/bin/python bench/client_cpu.py --cprofile            # + cProfile of the Python SDK child
    .venv/bin/python bench/client_cpu.py --profile             # + py-spy of the Python SDK child
    .venv/bin/python bench/client_cpu.py --loop uvloop         # the Python clients on uvloop

One gateway (``captivate-chat serve`` as in ``bench/roundtrip.py``: fresh temp SQLite file, generated key,
``CAPTIVATE_ACCESS_LOG=false``, ``CAPTIVATE_LOG_LEVEL=warning``, rate limits off) serves every client of the
run, on loopback. Each client runs in its own process, so its CPU is its own:

- ``python sdk (http)``: ``CaptivateChatAPI(key, base_url=..., transport="http")`` in a child Python;
- ``python sdk (websocket)``: the same with ``transport="websocket"``;
- ``npm 7.0.0 (node)``: the published package, installed unchanged into ``tests/interop/.npm/`` by the interop
  tests' helper (``tests/interop/npm_runner.py``), driven by ``bench/npm_client_cpu.cjs`` and redirected to the
  gateway by their harness (``tests/interop/npm_harness.cjs``: a ``ws`` subclass as ``globalThis.WebSocket``,
  a wrapped ``fetch``, both set before the package is loaded). The harness also keeps every frame and fetch
  it saw (one extra ``JSON.parse`` each): microseconds per message, counted in the npm client's CPU.

Each client opens one conversation (user-first) and sends N messages one at a time: ``send_message`` /
``sendMessage``, then waits for the demo agent's ``You said: <text>`` through ``on_message`` / ``onMessage``.
After the warm-up, the round trip (send called -> reply callback) of every message is recorded, and the
process's CPU time (getrusage user+sys, all threads: ``resource.getrusage`` in Python, ``process.cpuUsage()``
in Node, the same system call) is taken around the measured loop. Clients run in turn, in reversed order
every other round, each round with a fresh process and conversation; rounds are pooled.

The goal "Python SDK no slower than the npm client" is checked for each Python transport on CPU per message
and on p50 round trip (ratio Python / npm <= 1). The npm client only sends over HTTP, so ``python sdk (http)``
is the like-for-like comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from roundtrip import Profiler, Samples, short, start_gateway

ROOT = Path(__file__).resolve().parent.parent
NODE_SCRIPT = Path(__file__).resolve().with_name("npm_client_cpu.cjs")
INTEROP = ROOT / "tests" / "interop"
TEXT = "bench message {i}: how long does one round trip through the gateway take?"
PY_HTTP, PY_WS, NPM = "python sdk (http)", "python sdk (websocket)", "npm 7.0.0 (node)"
CLIENTS = (PY_HTTP, PY_WS, NPM)
TRANSPORTS = {PY_HTTP: "http", PY_WS: "websocket"}
W = 26  # width of the client column


# ---------------------------------------------------------------------------------------------------------
# the Python SDK client (run in a child process: ``--python-client``)


async def python_client(
    port: int,
    key: str,
    transport: str,
    messages: int,
    warmup: int,
    timeout: float,
    profile: cProfile.Profile | None,
    hold: bool,
) -> dict[str, object]:
    """The measured loop with the SDK; the same steps as ``npm_client_cpu.cjs``."""
    from captivate_chat_api import CaptivateChatAPI

    loop = asyncio.get_running_loop()
    latencies: list[int] = []
    waiting: list[tuple[str, asyncio.Future[int]]] = []  # the one reply in flight

    def on_message(message: object, kind: str) -> None:
        if not waiting:
            return
        text, future = waiting[0]
        if kind == "error":
            waiting.clear()
            future.set_exception(RuntimeError(f"on_message error: {message}"))
        elif kind == "ai_agent" and isinstance(message, dict) and message.get("text") == text:
            arrived = time.perf_counter_ns()
            waiting.clear()
            future.set_result(arrived)

    api = CaptivateChatAPI(key, base_url=f"http://127.0.0.1:{port}", transport=transport)  # type: ignore[arg-type]
    async with api, asyncio.timeout(timeout):
        conversation = await api.create_conversation(f"bench-python-{transport}", mode="user-first")
        conversation.on_message(on_message)
        for i in range(warmup + messages):
            if i == warmup:
                if hold:  # let the parent attach py-spy now, then go on
                    print("warm", flush=True)
                    sys.stdin.readline()
                wall0, usage0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
                if profile is not None:
                    profile.enable()
            text = TEXT.format(i=i)
            future: asyncio.Future[int] = loop.create_future()
            waiting.append((f"You said: {text}", future))
            started = time.perf_counter_ns()
            await conversation.send_message(text)
            arrived = await future
            if i >= warmup:
                latencies.append(arrived - started)
        if profile is not None:
            profile.disable()
        usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall0
        if hold:  # the parent stops py-spy before the client closes
            print("done", flush=True)
            sys.stdin.readline()
    return {
        "client": f"captivate_chat_api (python {sys.version.split()[0]}, transport={transport},"
        f" loop={type(loop).__module__.split('.')[0]})",
        "latencies_ns": latencies,
        "cpu_user_s": usage.ru_utime - usage0.ru_utime,
        "cpu_sys_s": usage.ru_stime - usage0.ru_stime,
        "wall_s": wall,
    }


def python_client_main(args: argparse.Namespace) -> None:
    # CPU time, not wall time: the loop's wait in epoll is idle, not a cost (cProfile's default timer is wall).
    profile = cProfile.Profile(time.thread_time) if args.cprofile_out else None
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(
            python_client(
                args.port,
                os.environ["CCA_KEY"],
                args.transport,
                args.messages,
                args.warmup,
                args.timeout,
                profile,
                args.hold,
            )
        )
    if profile is not None:
        profile.dump_stats(args.cprofile_out)
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------------------
# running the clients


@dataclass
class ClientRun:
    """One client process's measured loop."""

    client: str
    latencies_ns: list[int]
    cpu_user_s: float
    cpu_sys_s: float
    wall_s: float

    @property
    def messages(self) -> int:
        return len(self.latencies_ns)

    def cpu_ms(self) -> float:
        return (self.cpu_user_s + self.cpu_sys_s) * 1000 / self.messages


def parse_result(name: str, stdout: str, stderr: str, code: int) -> ClientRun:
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        result = {"error": f"no JSON result (exit {code})"}
    if "error" in result or code != 0:
        raise SystemExit(f"{name} failed: {result.get('error')}\nstderr:\n{stderr[-3000:]}")
    return ClientRun(
        result["client"], result["latencies_ns"], result["cpu_user_s"], result["cpu_sys_s"], result["wall_s"]
    )


def run_python(
    name: str,
    port: int,
    key: str,
    args: argparse.Namespace,
    cprofile_out: Path | None,
    pyspy_out: Path | None,
) -> ClientRun:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--python-client",
        "--port",
        str(port),
        "--transport",
        TRANSPORTS[name],
        "--messages",
        str(args.messages),
        "--warmup",
        str(args.warmup),
        "--timeout",
        str(args.timeout),
        "--loop",
        args.loop,
    ]
    if cprofile_out is not None:
        cmd += ["--cprofile-out", str(cprofile_out)]
    if pyspy_out is not None:
        cmd.append("--hold")
    env = {**os.environ, "CCA_KEY": key}  # not on the command line: argv is visible to every local user
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        if pyspy_out is not None:
            assert proc.stdout is not None and proc.stdin is not None
            if proc.stdout.readline().strip() != "warm":
                proc.kill()
                raise SystemExit(f"{name} did not reach the measured loop:\n{proc.communicate()[1][-3000:]}")
            profiler = Profiler(proc.pid, pyspy_out, args.profile_rate)
            profiler.start()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            proc.stdout.readline()  # "done" (or "" if the child died: its stderr tells below)
            profiler.stop()
            stdout, stderr = proc.communicate("go\n", timeout=args.timeout + 30)
        else:
            stdout, stderr = proc.communicate(timeout=args.timeout + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    return parse_result(name, stdout, stderr, proc.returncode)


def npm_runner():  # type: ignore[no-untyped-def]
    """The interop tests' npm helpers (tests/interop/npm_runner.py): same install prefix, same npm call."""
    sys.path[:0] = [str(INTEROP), str(ROOT / "tests")]
    import npm_runner

    return npm_runner


@contextlib.contextmanager
def npm_problems_exit() -> Iterator[None]:
    """The helpers skip or fail a test when the npm client cannot run; here that ends the bench, with the reason."""
    import pytest

    try:
        yield
    except (pytest.skip.Exception, pytest.fail.Exception, AssertionError) as exc:
        raise SystemExit(f"{NPM}: {exc}") from None


def ensure_npm_client() -> str:
    """node's path, with captivate-chat-api@7.0.0 installed under tests/interop/.npm (npm run if missing)."""
    with npm_problems_exit():
        return str(npm_runner().ensure_client())


def run_npm(port: int, key: str, args: argparse.Namespace) -> ClientRun:
    env = {
        **os.environ,
        "CCA_PORT": str(port),
        "CCA_KEY": key,
        "CCA_MESSAGES": str(args.messages),
        "CCA_WARMUP": str(args.warmup),
        "CCA_TEXT": TEXT,
        "CCA_TIMEOUT_MS": str(int(args.timeout * 1000)),
    }
    helpers = npm_runner()
    with npm_problems_exit():
        results = helpers.run_script(NODE_SCRIPT, env, timeout=args.timeout + 30)
        result = helpers.step(results, "measure")
    redirected = results["_meta"]["redirected"]
    if not redirected["ws"] or not redirected["fetch"]:
        raise SystemExit(
            f"{NPM}: the client's socket or fetch was not redirected to the gateway: {redirected}"
        )
    return ClientRun(
        result["client"], result["latencies_ns"], result["cpu_user_s"], result["cpu_sys_s"], result["wall_s"]
    )


# ---------------------------------------------------------------------------------------------------------
# reporting


@dataclass
class Pooled:
    runs: list[ClientRun] = field(default_factory=list)

    @property
    def samples(self) -> Samples:
        return Samples("", [ns for run in self.runs for ns in run.latencies_ns])

    def per_message_ms(self, attr: str) -> float:
        return sum(getattr(run, attr) for run in self.runs) * 1000 / sum(run.messages for run in self.runs)

    @property
    def cpu_ms(self) -> float:
        return self.per_message_ms("cpu_user_s") + self.per_message_ms("cpu_sys_s")


def print_table(pooled: dict[str, Pooled]) -> None:
    print("\nper message, pooled over rounds (CPU: the client process, user+sys, getrusage around the loop)")
    print(
        f"  {'client':<{W}} {'CPU ms':>7} {'user':>7} {'sys':>7} {'rt p50':>8} {'rt p99':>8} {'rt mean':>8}"
        f" {'wall ms':>8}  CPU ms per round"
    )
    for name, pool in pooled.items():
        s = pool.samples
        rounds = " ".join(f"{run.cpu_ms():.3f}" for run in pool.runs)
        print(
            f"  {name:<{W}} {pool.cpu_ms:7.3f} {pool.per_message_ms('cpu_user_s'):7.3f} "
            f"{pool.per_message_ms('cpu_sys_s'):7.3f} {s.p50:8.3f} {s.p99:8.3f} {s.mean:8.3f} "
            f"{pool.per_message_ms('wall_s'):8.3f}  {rounds}"
        )
    print("  (rt = round trip, send called -> reply callback, ms; wall ms = measured loop time / messages)")


def print_verdict(pooled: dict[str, Pooled]) -> None:
    if NPM not in pooled:
        return
    npm = pooled[NPM]
    print(
        "\nratio Python SDK / npm client (<= 1.00: Python no slower), pooled; then per round (same round's npm)"
    )
    print(
        f"  {'client':<{W}} {'CPU/msg':>8} {'p50 rt':>8} {'p99 rt':>8}  {'per round CPU | p50':<24}"
        " goal: no slower than the npm client"
    )
    for name in (PY_HTTP, PY_WS):
        if name not in pooled:
            continue
        py = pooled[name]
        cpu, p50, p99 = (
            py.cpu_ms / npm.cpu_ms,
            py.samples.p50 / npm.samples.p50,
            py.samples.p99 / npm.samples.p99,
        )
        rounds = list(zip(py.runs, npm.runs, strict=False))
        per_round = (
            " ".join(f"{a.cpu_ms() / b.cpu_ms():.2f}" for a, b in rounds)
            + " | "
            + " ".join(f"{p50_ms(a) / p50_ms(b):.2f}" for a, b in rounds)
        )
        verdict = goal_verdict(
            {
                "CPU": [cpu] + [a.cpu_ms() / b.cpu_ms() for a, b in rounds],
                "p50": [p50] + [p50_ms(a) / p50_ms(b) for a, b in rounds],
            }
        )
        print(f"  {name:<{W}} {cpu:7.2f}x {p50:7.2f}x {p99:7.2f}x  {per_round:<24} {verdict}")
    print("  (the npm client sends over HTTP only: python sdk (http) is the like-for-like comparison;")
    print("   a metric is met when the pooled and every per-round ratio is <= 1, missed when all are > 1,")
    print("   and within noise when they disagree: rerun on an idle machine or with more --rounds)")


def goal_verdict(ratios: dict[str, list[float]]) -> str:
    """MET / NOT MET / WITHIN NOISE from each metric's ratios (pooled first, then per round)."""
    missed = [name for name, values in ratios.items() if all(r > 1.0 for r in values)]
    unsure = [name for name, values in ratios.items() if any(r > 1.0 for r in values) and name not in missed]
    if missed:
        return "NOT MET (slower on " + " and ".join(missed) + ")"
    if unsure:
        return "WITHIN NOISE on " + " and ".join(unsure)
    return "MET"


def p50_ms(run: ClientRun) -> float:
    return Samples("", run.latencies_ns).p50


def print_cprofile(path: Path, messages: int, top: int) -> None:
    stats = pstats.Stats(str(path))
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    print(
        f"  {total * 1000 / messages:.3f} ms/msg of profiled CPU time (thread_time; cProfile's overhead included,"
        " so compare shares); a coroutine counts one call per resumption"
    )
    for key, title in (("tottime", "self time"), ("cumulative", "inclusive time")):
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2 if key == "tottime" else 3], reverse=True)  # type: ignore[attr-defined]
        print(f"  top {top} by {title}: {'ms/msg':>8} {'% total':>8} {'calls/msg':>9}  function")
        for (file, line, fn), (_, ncalls, tt, ct, _) in rows[:top]:
            value = tt if key == "tottime" else ct
            where = f"{fn} ({short_path(file)}:{line})" if line else fn
            print(
                f"    {value * 1000 / messages:32.4f} {value / total:8.1%} {ncalls / messages:9.1f}  {where}"
            )


def short_path(file: str) -> str:
    """``.../site-packages/httpx/_client.py`` -> ``httpx/_client.py``."""
    parts = Path(file).parts
    for anchor in ("site-packages", "src", "lib"):
        if anchor in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(anchor) :])
    return Path(file).name


def print_pyspy(path: Path, messages: int, rate: int, top: int) -> None:
    """Top self and inclusive frames of the Python SDK child, as CPU ms per message."""
    from collections import Counter

    leaf, inclusive, total, unattributed = Counter[str](), Counter[str](), 0, 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [short(f) for f in stack.split(";") if not f.startswith(("process ", "thread ("))]
        if not frames:  # --nonblocking: py-spy read no consistent stack while the process ran on
            unattributed += n
            continue
        total += n
        leaf[frames[-1]] += n
        for fn in {f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in frames}:
            inclusive[fn] += n

    def ms(n: int) -> float:
        return n * 1000 / rate / messages

    print(
        f"  {total} samples with a stack = {ms(total):.3f} ms/msg (+ {unattributed} without one, left out);"
        " sampled and approximate: time in send()/epoll_wait() counts as on CPU, prefer --cprofile for shares"
    )
    for title, counter in (("self (leaf frame)", leaf), ("inclusive", inclusive)):
        print(f"  top {top} by {title}:")
        for frame, n in counter.most_common(top):
            print(f"    {ms(n):8.4f} ms/msg {n / total:6.1%}  {frame[:110]}")


def load_average() -> str:
    try:
        return "/".join(f"{value:.2f}" for value in os.getloadavg()) + " (1/5/15 min)"
    except OSError:
        return "unknown"


# ---------------------------------------------------------------------------------------------------------
# the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=200, help="measured messages per client and round (200)"
    )
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured messages first (default 30)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, order reversed every other one (2)")
    parser.add_argument("--client", choices=CLIENTS, action="append", help="client(s) to run (default all)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per client process (60)")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the Python clients' event loop (asyncio)",
    )
    parser.add_argument("--cprofile", action="store_true", help="cProfile the Python SDK's measured loop")
    parser.add_argument("--profile", action="store_true", help="py-spy the Python SDK's measured loop")
    parser.add_argument("--profile-rate", type=int, default=500, help="py-spy samples per second (500)")
    parser.add_argument("--profile-dir", default=tempfile.gettempdir(), help="where raw profiles are kept")
    parser.add_argument("--top", type=int, default=20, help="profile rows shown (20)")
    # the child side
    parser.add_argument("--python-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--transport", help=argparse.SUPPRESS)
    parser.add_argument("--cprofile-out", help=argparse.SUPPRESS)
    parser.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.python_client:
        python_client_main(args)
        return
    if args.messages < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--messages and --rounds must be >= 1, --warmup >= 0")

    clients = [c for c in CLIENTS if c in (args.client or CLIENTS)]
    node = ensure_npm_client() if NPM in clients else ""
    node_version = (
        subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        if node
        else "-"
    )
    tmp = Path(tempfile.mkdtemp(prefix="captivate-bench-"))
    print(
        f"python {sys.version.split()[0]}, node {node_version}, {os.cpu_count()} CPUs; "
        f"{args.messages} measured messages per client and round after {args.warmup} warm-up, "
        f"{args.rounds} round(s), sequential, loopback, one gateway; load average {load_average()}"
    )
    pooled: dict[str, Pooled] = {name: Pooled() for name in clients}
    profiles: dict[str, list[tuple[str, Path]]] = {"cprofile": [], "py-spy": []}
    started = time.monotonic()
    gateway = start_gateway(tmp / "gateway.db")
    try:
        for round_no in range(args.rounds):
            order = clients if round_no % 2 == 0 else clients[::-1]
            for name in order:
                if name == NPM:
                    run = run_npm(gateway.port, gateway.key, args)
                else:
                    run = run_python(name, gateway.port, gateway.key, args, None, None)
                pooled[name].runs.append(run)
                print(
                    f"  round {round_no + 1}: {name:<{W}} CPU {run.cpu_ms():.3f} ms/msg, "
                    f"p50 {p50_ms(run):.3f} ms  [{run.client}]",
                    flush=True,
                )
        # Profiled runs come after the measured rounds and are not pooled: profilers inflate both figures.
        for name in (c for c in clients if c in TRANSPORTS):
            for kind, enabled, suffix in (
                ("cprofile", args.cprofile, "prof"),
                ("py-spy", args.profile, "txt"),
            ):
                if enabled:
                    out = (
                        Path(args.profile_dir)
                        / f"client-cpu-{TRANSPORTS[name]}-{os.getpid()}.{kind}.{suffix}"
                    )
                    outs = (out, None) if kind == "cprofile" else (None, out)
                    run_python(name, gateway.port, gateway.key, args, *outs)
                    profiles[kind].append((name, out))
    except BaseException:
        sys.stderr.write("gateway output:\n" + gateway.child.output()[-5000:])
        raise
    finally:
        gateway.child.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - started
    problems = [line for line in gateway.child.lines if "ERROR" in line or "Traceback" in line]
    if problems:
        sys.stderr.write("gateway logged errors:\n" + "".join(problems[:20]))

    print_table(pooled)
    print_verdict(pooled)
    for name, path in profiles["cprofile"]:
        print(f"\ncProfile of {name}, an extra unpooled run ({args.messages} messages), raw stats in {path}:")
        print_cprofile(path, args.messages, args.top)
    for name, path in profiles["py-spy"]:
        print(
            f"\npy-spy of {name} at {args.profile_rate} Hz, an extra unpooled run ({args.messages} messages),"
            f" raw stacks in {path}:"
        )
        if path.exists():
            print_pyspy(path, args.messages, args.profile_rate, args.top)
        else:
            print("  (py-spy wrote no profile)")
    print(
        f"\ntotal {elapsed:.1f} s; load average now {load_average()} (other work on these {os.cpu_count()} CPUs"
        " slows every client and blurs the ratios: compare runs on an idle machine)"
    )


if __name__ == "__main__":
    main()
