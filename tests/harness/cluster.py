"""Services for the scale-out tests: a Redis server of our own, a PostgreSQL schema, gateway processes.

Each test module gets its own ``redis-server`` on a free loopback port (so a test may stop and restart
it without disturbing anyone) and its own PostgreSQL schema (dropped afterwards). Under CI a missing
PostgreSQL or ``redis-server`` is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.gateway import POSTGRES_URL, GatewayProcess, drop_schema, in_ci, postgres_available  # noqa: F401 (re-exported)

QUIET = {"CAPTIVATE_ACCESS_LOG": "false", "CAPTIVATE_RATE_PER_SOCKET": "0", "CAPTIVATE_RATE_PER_KEY": "0"}


def missing(what: str) -> None:
    """A missing service: a failure under CI, a skip elsewhere."""
    if in_ci():
        pytest.fail(what)
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server`` as a child process on a fixed loopback port, keeping nothing on disk."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            missing("redis-server is not installed (Debian package redis-server)")
        assert exe is not None
        cmd = [
            exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # an outage, not a goodbye: clients see their connections reset
            self.proc.wait(10)
        self.proc = None


def new_schema_url() -> tuple[str, str]:
    schema = f"scale_{uuid.uuid4().hex[:12]}"
    return f"{POSTGRES_URL}?schema={schema}", schema


async def prepare(database: str, keys: list[str]) -> None:
    """Create the schema and register ``keys`` once, so that gateways started together race for nothing."""
    from captivate_chat_api.server.gateway import register_key
    from captivate_chat_api.server.store import store_from_url

    store = store_from_url(database)
    await store.open()
    try:
        for key in keys:
            await register_key(store, key)
    finally:
        await store.close()


def start_gateways(
    database: str, keys: list[str], broker: str, count: int, env: dict[str, str] | None = None
) -> list[GatewayProcess]:
    """``count`` gateway processes sharing ``database`` and ``broker``, started side by side."""
    asyncio.run(prepare(database, keys))
    shared = {**QUIET, "CAPTIVATE_BROKER": broker, **(env or {})}
    gateways = [GatewayProcess(database, keys, env=shared) for _ in range(count)]
    with ThreadPoolExecutor(count) as pool:
        starts = [pool.submit(gateway.start) for gateway in gateways]
    failed = [future.exception() for future in starts if future.exception() is not None]
    if failed:
        for gateway in gateways:
            if gateway.proc is not None:
                gateway.stop()
        raise RuntimeError(f"{len(failed)} of {count} gateways did not start") from failed[0]
    return gateways
