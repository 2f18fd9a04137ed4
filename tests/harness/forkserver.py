"""Gateway processes forked from one interpreter that imported the gateway once (a fork server).

A gateway start is ~0.7 CPU-s, most of it Python importing the server; the suite starts dozens. The fork
server (one per test process, started on first use; under xdist one for all workers, see ``ForkServer``) imports ``captivate_chat_api.cli`` and what ``serve``
loads, then forks a child per request: the child takes its arguments, environment, working directory and
stdout/stderr pipes and runs the CLI's ``main()``, as ``python -m captivate_chat_api.cli ARGS`` would. It
is a real gateway process on real sockets; only the imports happened before the fork. ``ForkedProcess``
gives it ``subprocess.Popen``'s interface (``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``,
``stdout``, ``stderr``), as ``GatewayProcess`` uses it. A ``Job`` may name modules to ``preload`` (the fork
server imports them before it forks, and keeps them for the next child: an ``openai:`` agent's ``openai``)
or a ``script`` to run instead of the CLI, as ``python SCRIPT ARGS`` would (the webhook tests' agent app,
a FastAPI program: the fork server imported FastAPI, uvicorn and httpx already; the Python examples), or a
``module``, as ``python -m MODULE ARGS`` would (the webhook example's ``python -m uvicorn``).

A second kind, ``terminal`` (started only by a test process that runs them), imported the CLI's clients
instead: ``harness.terminal.Terminal`` forks ``chat`` and ``console`` onto a pseudo-terminal from it (the
child's own session, the terminal as its controlling one), and ``run_cli`` runs a command with piped
stdin from either kind.

``GatewayProcess`` forks only where that is the same thing: not for ``console_script`` gateways (the
installed script's own start-up is what they test) nor when the environment changes ``PYTHON*`` variables
(e.g. a ``PYTHONPATH`` that hides a package); those, and every gateway when ``CAPTIVATE_TEST_FRESH_GATEWAYS=1``,
start a fresh interpreter.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from .cli_child import CLIENT_WARM, PRELUDE, WARM

SERVER = r"""
import fcntl, importlib, json, os, select, signal, socket, sys, termios

import captivate_chat_api.cli as cli

warm_up(sys.argv[2].split(","))  # e.g. what `serve` imports next, or the terminal's chat and console

listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen(64)
print("ready", flush=True)
base_path = list(sys.path)
children = {}  # pid -> the connection its exit status is written to


def run_child(job, fds):
    if job.get("tty"):  # a pseudo-terminal's other end: stdin, stdout, stderr and the controlling terminal
        os.setsid()
        for target in (0, 1, 2):
            os.dup2(fds[0], target)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        os.close(fds[0])
    else:
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        stdin = fds[2] if len(fds) > 2 else os.open(os.devnull, os.O_RDONLY)  # a pipe, or nothing
        os.dup2(stdin, 0)
        for fd in {*fds, stdin}:
            os.close(fd)
    signal.set_wakeup_fd(-1)
    os.close(wake_r)
    os.close(wake_w)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if job.get("script"):
        become_script(job, base_path)
    if job.get("module"):
        become_module(job, base_path)
    become_cli(job, cli.__file__, base_path)


wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
while True:
    ready, _, _ = select.select([listener, sys.stdin, wake_r], [], [])
    if sys.stdin in ready and not sys.stdin.readline():
        break  # the test process is gone
    if wake_r in ready:
        os.read(wake_r, 4096)
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        conn = children.pop(pid, None)
        if conn is not None:
            try:
                conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
            finally:
                conn.close()
    if listener in ready:
        conn, _ = listener.accept()
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        job = json.loads(message)
        if job.get("preload"):  # modules this child would import later (its parent keeps them for the next)
            warm_up(job["preload"])
        pid = os.fork()
        if pid == 0:
            listener.close()
            conn.close()
            for other in children.values():
                other.close()
            run_child(job, fds)
        for fd in fds:
            os.close(fd)
        children[pid] = conn
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
for pid in children:  # left running by the test process: end them, and wait (their CPU is counted)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""


PRELOAD = {
    "gateway": ("captivate_chat_api.server.serve", "captivate_chat_api.server.app", *WARM),
    "terminal": ("captivate_chat_api.terminal", "captivate_chat_api.console", *CLIENT_WARM),
}
"""What each kind of fork server imports before it forks: a gateway's server, or the CLI's clients."""


@dataclass(frozen=True)
class Job:
    """What a fork server's child becomes: ``captivate-chat ARGS``, or ``python SCRIPT ARGS`` (``script``), or
    ``python -m MODULE ARGS`` (``module``), with ``env``, in ``cwd``; ``preload``: modules the fork server
    imports first (once: what the child would import when it first needs it, e.g. an agent's ``openai``)."""

    args: list[str]
    env: dict[str, str]
    cwd: Path | None = None
    preload: tuple[str, ...] = ()
    script: Path | None = None
    module: str | None = None

    def wire(self) -> dict[str, Any]:
        """The job as the fork server reads it (JSON)."""
        return {
            "args": self.args,
            "env": self.env,
            "cwd": str(self.cwd) if self.cwd else None,
            "preload": list(self.preload),
            "script": str(self.script) if self.script else None,
            "module": self.module,
        }

    def command(self) -> list[str]:
        """The command line a fresh process of it would have."""
        if self.script:
            return [sys.executable, str(self.script), *self.args]
        if self.module:
            return [sys.executable, "-m", self.module, *self.args]
        return ["captivate-chat", *self.args]


FORK = os.environ.get("CAPTIVATE_TEST_FORK_GATEWAYS") == "1"
"""Whether children are forked from fork servers: the suite turns it on (tests/conftest.py), and
``CAPTIVATE_TEST_FORK_GATEWAYS=1`` for a tool of ``tools/`` that the suite runs as a process."""


def forking() -> bool:
    """``FORK``, unless ``CAPTIVATE_TEST_FRESH_GATEWAYS=1`` asks for a fresh interpreter every time."""
    return FORK and os.environ.get("CAPTIVATE_TEST_FRESH_GATEWAYS") != "1"


SHARED = "CAPTIVATE_TEST_FORK_SERVERS"
"""Set by a process that shares its fork servers with the processes it starts (``ForkServer.share``: the
xdist controller, for its workers): ``{kind: [socket path, {PYTHON* variables}]}``."""
START_TIMEOUT = 60.0


class ForkServer:
    """This test process's fork server of a kind (``ForkServer.get()``), until ``ForkServer.shutdown()``:
    ``gateway`` (``captivate-chat serve``) or ``terminal`` (``chat`` and ``console`` in a pseudo-terminal,
    started only by a test process that runs them). Under xdist the controller starts one of each kind for all
    its workers (``share``), while they start and collect; a worker's ``get`` connects to it. A start imports
    the server (or the CLI's clients), ~1.7 (~0.9) CPU-s: once a run instead of once a worker."""

    _instances: ClassVar[dict[str, ForkServer]] = {}
    _lock = threading.Lock()
    proc: subprocess.Popen[str] | None

    def __init__(self, env: dict[str, str], kind: str = "gateway") -> None:
        self.kind = kind
        self.python_env = {name: value for name, value in env.items() if name.startswith("PYTHON")}
        self.dir: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
            prefix=f"{kind}-forks-"
        )
        self.path = str(Path(self.dir.name) / "socket")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + SERVER, self.path, ",".join(PRELOAD[kind])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.ready = False  # its "ready" line read (by the first fork through it)
        atexit.register(ForkServer.shutdown)  # a tool's process too waits for it (and its CPU is counted)

    @classmethod
    def get(cls, env: dict[str, str], kind: str = "gateway") -> ForkServer:
        with cls._lock:
            server = cls._instances.get(kind)
            if server is None or (server.proc is not None and server.proc.poll() is not None):
                shared = json.loads(os.environ.get(SHARED, "{}")).get(kind)
                server = cls._instances[kind] = cls._attached(kind, *shared) if shared else cls(env, kind)
            return server

    @classmethod
    def for_env(cls, env: dict[str, str], kind: str = "gateway") -> ForkServer | None:
        """This process's fork server of ``kind`` if a child with ``env`` may be forked from it (``forking()``,
        and the ``PYTHON*`` variables are the fork server's), else None: start a fresh interpreter."""
        if not forking():
            return None
        server = cls.get(dict(os.environ), kind)
        return server if server.same_interpreter(env) else None

    @classmethod
    def share(cls, env: dict[str, str], kinds: tuple[str, ...] = tuple(PRELOAD)) -> None:
        """Start a fork server of each kind for the processes this one starts from now on (their ``get``
        connects to it, through ``SHARED`` in the environment they inherit). It does not wait for them to be
        ready: the first fork through each does."""
        servers = {kind: cls.get(env, kind) for kind in kinds}
        os.environ[SHARED] = json.dumps({kind: [s.path, s.python_env] for kind, s in servers.items()})

    @classmethod
    def _attached(cls, kind: str, path: str, python_env: dict[str, str]) -> ForkServer:
        """Another process's fork server (``share``), which that process ends."""
        server = cls.__new__(cls)
        server.kind, server.python_env, server.path = kind, python_env, path
        server.proc, server.dir, server.ready = None, None, False
        return server

    def _wait_ready(self) -> None:
        """Its own: read its "ready" line, once (another process's is ready when its socket connects)."""
        if self.ready or self.proc is None:
            return
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {self.kind} fork server did not start (exit {self.proc.wait()})")
        self.ready = True

    def _connect(self) -> socket.socket:
        """A connection to it: another process's may still be starting (no socket yet, or not listening)."""
        with self._lock:
            self._wait_ready()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(self.path)
                return conn
            except (FileNotFoundError, ConnectionRefusedError):
                conn.close()
                if self.proc is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def same_interpreter(self, env: dict[str, str]) -> bool:
        """Whether a child with ``env`` is what a fresh interpreter would be: the ``PYTHON*`` variables
        (read once, when an interpreter starts) are the fork server's own."""
        return {name: value for name, value in env.items() if name.startswith("PYTHON")} == self.python_env

    @classmethod
    def shutdown(cls) -> None:
        """End the fork server and wait for it, so the CPU of the gateways it forked (and waited for) is
        counted to this process, as a fresh gateway's is."""
        with cls._lock:
            servers = list(cls._instances.values())
            cls._instances.clear()
        for server in servers:
            server._stop()

    def _stop(self) -> None:
        server = self
        if server.proc is None or server.dir is None:
            return  # another process's: it ends it
        assert server.proc.stdin is not None and server.proc.stdout is not None
        server.proc.stdin.close()
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
        server.proc.stdout.close()
        server.dir.cleanup()

    def spawn(self, job: Job, merge_stderr: bool = False) -> ForkedProcess:
        """``job`` with piped stdout and stderr (``merge_stderr``: both into ``stdout``, as
        ``stderr=subprocess.STDOUT``)."""
        out_r, out_w = os.pipe()
        err_r, err_w = (None, out_w) if merge_stderr else os.pipe()
        try:
            pid, conn = self._fork(job.wire(), [out_w, err_w])
        finally:
            for fd in {out_w, err_w}:
                os.close(fd)
        return ForkedProcess(
            pid,
            conn,
            os.fdopen(out_r, "r", errors="replace"),
            None if err_r is None else os.fdopen(err_r, "r", errors="replace"),
        )

    def run(self, job: Job, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``job`` with ``stdin`` piped in, as ``subprocess.run(..., input=stdin, capture_output=True,
        text=True, timeout=timeout)`` would run it (a process of its own, its own exit status; past
        ``timeout`` it is killed and ``TimeoutExpired`` carries what it wrote)."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid, conn = self._fork(job.wire(), [out_w, err_w, in_r])
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        proc = ForkedProcess(
            pid, conn, os.fdopen(out_r, "r", errors="replace"), os.fdopen(err_r, "r", errors="replace")
        )
        output: dict[str, str] = {}
        readers = [
            threading.Thread(target=lambda n=name, f=stream: output.__setitem__(n, f.read()), daemon=True)
            for name, stream in (("out", proc.stdout), ("err", proc.stderr))
        ]
        for reader in readers:
            reader.start()
        data = stdin.encode()
        try:
            while data:
                data = data[os.write(in_w, data) :]
        except BrokenPipeError:  # it ended without reading all of it, as a process may
            pass
        finally:
            os.close(in_w)
        timed_out = False
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code, timed_out = proc.wait(), True
        finally:
            for reader in readers:
                reader.join(5)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        command = job.command()
        if timed_out:  # what it wrote, as subprocess.run's TimeoutExpired carries it
            raise subprocess.TimeoutExpired(command, timeout, output.get("out"), output.get("err"))
        return subprocess.CompletedProcess(command, code, output["out"], output["err"])

    def spawn_tty(self, args: list[str], env: dict[str, str], tty: int) -> ForkedProcess:
        """``captivate-chat ARGS`` on the pseudo-terminal whose other end is ``tty`` (its stdin, stdout,
        stderr and controlling terminal, in a session of its own, as a process started on a terminal);
        the caller keeps the master end and closes ``tty``."""
        pid, conn = self._fork({**Job(args, env).wire(), "tty": True}, [tty])
        return ForkedProcess(pid, conn, None, None)

    def _fork(self, job: dict[str, Any], fds: list[int]) -> tuple[int, socket.socket]:
        conn = self._connect()
        socket.send_fds(conn, [json.dumps(job).encode()], fds)
        answer = _read_line(conn)
        if not answer:
            raise RuntimeError("the fork server did not fork")
        return int(json.loads(answer)["pid"]), conn


def run_cli(
    args: list[str], env: dict[str, str], stdin: str = "", timeout: float = 60, kind: str = "terminal"
) -> subprocess.CompletedProcess[str]:
    """``python -m captivate_chat_api.cli ARGS`` with ``stdin`` piped in and its output captured: in the
    suite forked from the ``kind`` fork server (``terminal``: the CLI's clients imported; ``gateway``: the
    server), else (or with other ``PYTHON*`` variables, or ``CAPTIVATE_TEST_FRESH_GATEWAYS=1``) a fresh
    interpreter."""
    server = ForkServer.for_env(env, kind)
    if server is not None:
        return server.run(Job(args, env), stdin, timeout)
    return subprocess.run(
        [sys.executable, "-m", "captivate_chat_api.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def _read_line(conn: socket.socket) -> bytes:
    """One line from ``conn`` (blocking), read a byte at a time so nothing after it is consumed."""
    line = b""
    while not line.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte:
            break
        line += byte
    return line


class ForkedProcess:
    """A child of the fork server, with the part of ``subprocess.Popen``'s interface the harness uses."""

    def __init__(self, pid: int, conn: socket.socket, stdout: IO[str] | None, stderr: IO[str] | None) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdout = stdout
        self.stderr = stderr
        self._conn = conn
        self._lock = threading.Lock()

    def _collect(self, timeout: float | None) -> int | None:
        """The exit status the fork server writes when the child ends (None: not within ``timeout``)."""
        with self._lock:
            if self.returncode is None:
                ready, _, _ = select.select([self._conn], [], [], timeout)
                if not ready:
                    return None
                line = _read_line(self._conn)
                answer: dict[str, Any] = json.loads(line) if line else {"exit": -signal.SIGKILL}
                self.returncode = int(answer["exit"])
                self._conn.close()
            return self.returncode

    def poll(self) -> int | None:
        return self._collect(0.0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._collect(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
