"""What the benchmarks share: a gateway child on a free port, /proc readings, the event envelope.

Not a benchmark. The gateway child is the tests' own launcher (``tests/harness/gateway.py``), started with
the bench's quiet defaults (access log off, warnings only), on a fresh SQLite file unless a database URL is
given.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.gateway import GatewayProcess

MESSAGE_PATH = "/api/custom-channel/sockets/message"
QUIET = {"CAPTIVATE_ACCESS_LOG": "false", "CAPTIVATE_LOG_LEVEL": "warning"}
"""The bench's default gateway environment: a benchmark measures the gateway, not its log lines."""


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
