"""What the benchmarks share: a gateway child on a free port, /proc readings, the event envelope.

Not a benchmark. The gateway child is the tests' own launcher (``tests/harness/gateway.py``), started with
the bench's quiet defaults (access log off, warnings only), on a fresh SQLite file unless a database URL is
given.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.cluster import RedisServer
from harness.gateway import READY, GatewayProcess

__all__ = [
    "LOADED",
    "MESSAGE_PATH",
    "QUIET",
    "READY",
    "UNLIMITED",
    "bench_key",
    "cpu_seconds",
    "envelope",
    "gateway",
    "own_redis",
    "rss_kib",
    "rss_mib",
    "serve_command",
]

MESSAGE_PATH = "/api/custom-channel/sockets/message"
QUIET = {"CAPTIVATE_ACCESS_LOG": "false", "CAPTIVATE_LOG_LEVEL": "warning"}
"""The bench's default gateway environment: a benchmark measures the gateway, not its log lines."""
UNLIMITED = {
    "CAPTIVATE_RATE_PER_SOCKET": "0",
    "CAPTIVATE_RATE_PER_KEY": "0",
    "CAPTIVATE_STARTS_PER_MINUTE_PER_KEY": "0",
}
"""The rate limits off (the rows "as shipped" keep them)."""
LOADED = {"CAPTIVATE_SEND_QUEUE_FRAMES": "10000", "CAPTIVATE_MAX_SOCKETS_PER_KEY": "1000000"}
"""Room for a thousand sockets of one key, each far behind: what a saturating bench needs."""


def serve_command(database: str, keys: list[str], *more: str) -> list[str]:
    """``captivate-chat serve`` on a free port (it prints the port it got: :data:`READY`)."""
    cmd = [sys.executable, "-m", "captivate_chat_api.cli", "serve", "--port", "0", "--database", database]
    for key in keys:
        cmd += ["--api-key", key]
    return [*cmd, *more]


def own_redis() -> RedisServer:
    """A ``redis-server`` of the bench's own on a free loopback port, answering PING."""
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (or pass --redis URL)")
    return RedisServer().start()


def bench_key() -> str:
    return "cck_bench_" + secrets.token_urlsafe(16)


@contextlib.contextmanager
def gateway(
    keys: list[str], env: dict[str, str] | None = None, database: str | None = None
) -> Iterator[GatewayProcess]:
    """``captivate-chat serve`` with ``keys`` on a free loopback port until the block ends (SIGTERM, then kill)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        process = GatewayProcess(
            database or Path(folder) / "gw.db", keys, env={**QUIET, **(env or {})}
        ).start(timeout=60)
        try:
            yield process
        finally:
            process.stop()


def envelope(event_type: str, payload: dict[str, object]) -> dict[str, object]:
    """One client event as the HTTP route takes it."""
    return {"action": "sendMessage", "event": {"event_type": event_type, "event_payload": payload}}


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` (``VmRSS``), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) of process ``pid`` so far, from /proc (Linux); 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
