"""``serve --workers N``: N gateway processes on one port of one host, under one supervisor.

Each worker is a full gateway process that binds the same port with ``SO_REUSEPORT``, so the kernel
spreads new connections over them; they share the store (PostgreSQL, or a SQLite file for small setups)
and the broker, through which events reach sockets held by another worker. The supervisor reserves the
port, starts the workers, prints the banner once all are ready, forwards SIGTERM/SIGINT once, and exits
non-zero if a worker fails (a supervisor such as systemd then restarts the whole group).

A worker is forked from the supervisor once the supervisor imported the gateway (as gunicorn's
``--preload``): no worker starts an interpreter and imports the server again (~1 CPU-s each), and the
imported code's pages stay shared. Its settings are the supervisor's (never in argv or the environment:
they may carry secrets); it writes a line to the ready pipe once it serves.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from .settings import Settings

log = logging.getLogger("captivate_chat_api.server.workers")

WORKER_HEADER = "x-captivate-worker"
"""Response header naming the worker (0…N-1) that served a request or accepted a WebSocket."""
START_TIMEOUT = 60.0


class WorkersError(ValueError):
    """``--workers`` cannot be honoured as asked (the message says why and what to do)."""


def check(settings: Settings, workers: int) -> None:
    if workers < 1:
        raise WorkersError("--workers must be 1 or more")
    if workers == 1:
        return
    if not settings.broker:
        raise WorkersError(
            f"--workers {workers} needs --broker redis://HOST:PORT/DB: workers hand each other the events of"
            " sockets they do not hold through it"
        )
    if not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith(("linux", "freebsd")):
        raise WorkersError(
            "--workers needs SO_REUSEPORT load balancing (Linux, FreeBSD); elsewhere run one gateway per port"
            " behind a load balancer, with the same --database and --broker"
        )


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Hold ``port`` (a free one for 0) for the workers. A port anybody else holds is refused here: with
    ``SO_REUSEPORT`` alone, a second gateway group started by mistake would silently share the traffic."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise WorkersError(f"cannot bind {host}:{port}: {exc.strerror}") from None
        port = int(probe.getsockname()[1])
    return reuseport_socket(host, port), port  # bound, never listening: no connection lands on it


class ForkedWorker:
    """A worker process forked by the supervisor: the part of :class:`subprocess.Popen` it uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, status unknown
                self.returncode = 1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def preload() -> None:
    """Import what a worker runs, once, in the supervisor: its forked workers start from it."""
    from . import app, logs, serve  # noqa: F401


class Supervisor:
    def __init__(
        self, settings: Settings, workers: int, on_ready: Callable[[str, int], None] | None = None
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.on_ready = on_ready
        self.procs: list[ForkedWorker] = []
        self._stop_signal: int | None = None

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (then 0 if every worker stopped cleanly) or a worker fails (non-zero)."""
        reservation, port = reserve_port(self.settings.host, self.settings.port)
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        ready_r, ready_w = os.pipe()
        try:
            preload()
            child_settings = self._child_settings(port)
            for index in range(self.workers):
                self.procs.append(
                    self._spawn(index, child_settings, ready_w, (ready_r, reservation.fileno()))
                )
            os.close(ready_w)
            ready_w = -1
            failed = self._wait_ready(ready_r)
            if failed is None and self._stop_signal is None:
                log.info("%d workers serving on %s:%d", self.workers, self.settings.host, port)
                if self.on_ready is not None:
                    self.on_ready(self.settings.host, port)
                failed = self._wait_for_stop_or_failure()
            return self._shutdown(failed)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in (ready_r, ready_w):
                if fd >= 0:
                    os.close(fd)
            reservation.close()

    def _child_settings(self, port: int) -> str:
        # Keys were registered and the dev key made by the caller, once: workers starting together must not
        # race to do it again.
        data: dict[str, Any] = self.settings.model_dump(mode="json")
        data.update(port=port, api_keys=[], create_dev_key=False)
        return json.dumps(data)

    def _spawn(self, index: int, settings_json: str, ready_w: int, close: tuple[int, ...]) -> ForkedWorker:
        pid = os.fork()
        if pid:
            return ForkedWorker(pid)
        # the child: a session of its own (a terminal's Ctrl+C reaches the supervisor only; it forwards it
        # once), the signal dispositions of a fresh interpreter, none of the supervisor's other descriptors
        code = 1
        try:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for fd in close:
                os.close(fd)
            run_worker(index, ready_w, Settings(**json.loads(settings_json)))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it stopped on
            code = 128 + signal.SIGINT
        except BaseException:  # noqa: BLE001 -- a worker's crash is its exit status, told on stderr
            traceback.print_exc()
        finally:  # what a normal interpreter exit would write: the log handlers' and the streams' buffers
            with contextlib.suppress(Exception):
                logging.shutdown()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)

    def _request_stop(self, signum: int, frame: object) -> None:
        if self._stop_signal is not None:  # a second Ctrl+C: the workers stop without waiting
            self._signal_all(signal.SIGINT)
        self._stop_signal = signum

    def _signal_all(self, sig: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    def _exited(self) -> ForkedWorker | None:
        return next((proc for proc in self.procs if proc.poll() is not None), None)

    def _wait_ready(self, ready_r: int) -> ForkedWorker | None:
        """None once every worker serves; else the worker that exited first."""
        ready: set[bytes] = set()
        buffer = b""
        deadline = time.monotonic() + START_TIMEOUT
        while len(ready) < self.workers and self._stop_signal is None:
            exited = self._exited()
            if exited is not None:
                return exited
            if time.monotonic() > deadline:
                log.error("workers did not start within %.0f s", START_TIMEOUT)
                return self.procs[0]
            readable, _, _ = select.select([ready_r], [], [], 0.2)
            if readable:
                buffer += os.read(ready_r, 4096)
                *lines, buffer = buffer.split(b"\n")
                ready.update(lines)
        return None

    def _wait_for_stop_or_failure(self) -> ForkedWorker | None:
        while self._stop_signal is None:
            exited = self._exited()
            if exited is not None:
                return exited
            time.sleep(0.2)
        return None

    def _shutdown(self, failed: ForkedWorker | None) -> int:
        if failed is not None:
            log.error(
                "worker %d exited with code %s; stopping the others",
                self.procs.index(failed),
                failed.returncode,
            )
        self._signal_all(self._stop_signal or signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if failed is not None:
            return failed.returncode or 1
        # uvicorn re-raises the signal it stopped on once it is done: dying of it is a clean stop
        stopped = self._stop_signal or signal.SIGTERM
        return 0 if all(proc.returncode in (0, -stopped, 128 + stopped) for proc in self.procs) else 1


def supervise(settings: Settings, workers: int, on_ready: Callable[[str, int], None] | None = None) -> int:
    check(settings, workers)
    if settings.database.startswith("sqlite"):
        log.warning(
            "%d workers on one SQLite file: fine for a small setup; use PostgreSQL to go further", workers
        )
    return Supervisor(settings, workers, on_ready).run()


# the worker side ---------------------------------------------------------------------------------------


class WorkerHeader:
    """Names the worker in every HTTP response and WebSocket handshake (``x-captivate-worker``)."""

    def __init__(self, app: Any, index: int) -> None:
        self.app = app
        self.header = (WORKER_HEADER.encode(), str(index).encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def tagged(message: dict[str, Any]) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, tagged)


def run_worker(index: int, ready_fd: int, settings: Settings) -> None:
    from .app import create_app
    from .logs import configure_logging
    from .serve import GatewayServer, config_for

    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    # outside the whole app (fastpath.FastPaths answers the hot routes above the middleware stack)
    tagged = WorkerHeader(app, index)
    sock = reuseport_socket(settings.host, settings.port)

    def ready(host: str, port: int) -> None:
        os.write(ready_fd, f"{index}\n".encode())
        os.close(ready_fd)

    config = config_for(settings, tagged, gateway_app=app, handshake_headers=((WORKER_HEADER, str(index)),))
    GatewayServer(config, app, ready, own_process=True).run(sockets=[sock])
