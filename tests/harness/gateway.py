"""A real gateway in a child process (``captivate-chat serve``) on a free loopback port."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from .forkserver import ForkedProcess, ForkServer, Job

READY = re.compile(r"listening on http://([\d.]+):(\d+)")


def in_ci() -> bool:
    """Under CI a missing tool or service is a failure, never a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


POSTGRES_URL = os.environ.get("CAPTIVATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_available() -> bool:
    """True when the test PostgreSQL answers (under CI its absence is a failure: callers decide)."""
    import asyncio

    try:
        import asyncpg
    except ImportError:
        return False

    async def probe() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
        return True
    except Exception:  # noqa: BLE001 -- any failure to connect means "not there"
        return False


def require_postgres() -> str:
    """The test PostgreSQL's URL; without it the test fails under CI and is skipped elsewhere."""
    import pytest

    if not postgres_available():
        if in_ci():
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    return POSTGRES_URL


def drop_schema(schema: str, url: str = POSTGRES_URL) -> None:
    """Drop a test's own PostgreSQL schema (and everything in it)."""
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A fresh schema name for one test, dropped afterwards (use from a fixture: ``yield from``)."""
    require_postgres()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        drop_schema(schema)


def new_key() -> str:
    return "cck_test_" + secrets.token_urlsafe(24)


class GatewayProcess:
    def __init__(
        self,
        database: Path | str,
        api_keys: list[str],
        env: dict[str, str] | None = None,
        port: int = 0,
        args: list[str] | None = None,
        cwd: Path | None = None,
        console_script: bool = False,
        preload: tuple[str, ...] = (),
    ) -> None:
        # preload: modules a forked gateway's fork server imports first (``Job.preload``), e.g. the
        # ``openai`` an ``openai:`` agent imports on its first turn: imported once per test process, not
        # once per gateway; a fresh interpreter imports them itself, when it needs them
        self.preload = preload
        # console_script: run the installed `captivate-chat` (whose sys.path lacks the working directory, as
        # for a user) instead of `python -m captivate_chat_api.cli`
        self.console_script = console_script
        self.args = args or []  # more `serve` flags
        self.cwd = cwd
        self.database = database
        self.api_keys = api_keys
        self.env = env or {}
        self.port = port
        self.proc: subprocess.Popen[str] | ForkedProcess | None = None
        self.stdout: list[str] = []
        self.stderr: list[str] = []

    @property
    def database_url(self) -> str:
        """A URL as given (``postgresql://…``), or the SQLite file's."""
        if isinstance(self.database, str) and "://" in self.database:
            return self.database
        return f"sqlite:///{self.database}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        program = (
            [str(Path(sys.executable).parent / "captivate-chat")]
            if self.console_script
            else [sys.executable, "-m", "captivate_chat_api.cli"]
        )
        cmd = [*program, "serve", "--port", str(self.port), "--database", self.database_url]
        for key in self.api_keys:
            cmd += ["--api-key", key]
        cmd += self.args
        base = {**os.environ, "COLUMNS": "200", "CAPTIVATE_LOG_LEVEL": "info"}
        env = {**base, **self.env}
        # the installed script's own start-up is what a console_script gateway tests: never forked
        server = None if self.console_script else ForkServer.for_env(env)
        if server is not None:
            self.proc = server.spawn(Job(cmd[3:], env, self.cwd, self.preload))
        else:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=self.cwd
            )
        ready = threading.Event()

        def pump(stream, sink, watch):  # type: ignore[no-untyped-def]
            for line in stream:
                sink.append(line)
                match = READY.search(line) if watch else None
                if match:
                    self.port = int(match.group(2))
                if watch and "Ctrl+C stops the gateway" in line:  # the banner's last line
                    ready.set()

        self._pumps = [
            threading.Thread(target=pump, args=(self.proc.stdout, self.stdout, True), daemon=True),
            threading.Thread(target=pump, args=(self.proc.stderr, self.stderr, False), daemon=True),
        ]
        for thread in self._pumps:
            thread.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start:\n" + "".join(self.stdout + self.stderr))
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for thread in self._pumps:
            thread.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def logs(self) -> str:
        return "".join(self.stdout + self.stderr)
