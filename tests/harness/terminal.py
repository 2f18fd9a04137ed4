"""The CLI's interactive commands (``chat``, ``console``) driven in a pseudo-terminal, as a person would."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import pty
import re
import struct
import sys
import termios

import pexpect
from pexpect.fdpexpect import fdspawn

from .forkserver import ForkServer

TIMEOUT = 15  # seconds for any one expected line: generous, but a hang fails well inside the suite's limit
ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"
"""Escape sequences that may sit between what a pattern looks for."""


def cli_environment(secret_name: str, secret: str | None, **extra: str) -> dict[str, str]:
    """This process's environment for the CLI, with ``secret_name`` set to ``secret`` or removed."""
    env = {**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1", **extra}
    env.pop(secret_name, None)
    if secret is not None:
        env[secret_name] = secret
    return env


ROWS, COLUMNS = 50, 200


class ForkedTerminal(fdspawn):
    """pexpect on the master end of a pseudo-terminal whose process was forked by the ``terminal`` fork
    server (``harness/forkserver.py``): the part of ``pexpect.spawn`` the tests use."""

    def __init__(self, server: ForkServer, args: list[str], env: dict[str, str]) -> None:
        master, tty = pty.openpty()
        fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        try:
            self.proc = server.spawn_tty(args, env, tty)
        finally:
            os.close(tty)  # the child's now: its exit is the master's end of file
        super().__init__(master, encoding="utf-8", timeout=TIMEOUT)
        self.exitstatus: int | None = None

    def sendeof(self) -> None:
        self.send("\x04")  # Ctrl+D

    def isalive(self) -> bool:
        return self.proc.poll() is None

    def close(self, force: bool = True) -> None:
        if force and not self.flag_eof:  # still running (at the end of file it is exiting by itself)
            self.proc.kill()
        code = self.proc.wait(TIMEOUT)
        self.exitstatus = code if code >= 0 else None
        super().close()


class Terminal:
    """``captivate-chat ARGS`` in a pseudo-terminal (50x200); everything it printed is kept in ``screen``.

    In the suite (``harness.forkserver.FORK``) the process is forked from an interpreter that imported the CLI
    and its terminal clients once (~0.5 CPU-s less a start); it still gets its own session, the terminal as
    its controlling one, exactly ``env`` and its own exit status. A ``PYTHON*`` variable other than the fork
    server's, or ``CAPTIVATE_TEST_FRESH_GATEWAYS=1``, starts a fresh ``python -m captivate_chat_api.cli``."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.screen = io.StringIO()
        server = ForkServer.for_env(env, "terminal")
        self.child: pexpect.spawn | ForkedTerminal
        if server is not None:
            self.child = ForkedTerminal(server, args, env)
        else:
            self.child = pexpect.spawn(
                sys.executable,
                ["-m", "captivate_chat_api.cli", *args],
                env=env,
                dimensions=(ROWS, COLUMNS),
                encoding="utf-8",
                timeout=TIMEOUT,
            )
        self.child.logfile_read = self.screen

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        self.child.expect(pattern, timeout=timeout)
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    async def see(self, pattern: str) -> re.Match[str]:
        """``expect`` off the event loop, so that sockets of the test keep being served meanwhile."""
        return await asyncio.to_thread(self.expect, pattern)

    def exit_status(self) -> int | None:
        self.child.expect(pexpect.EOF, timeout=TIMEOUT)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.close(force=True)
        elif isinstance(self.child, ForkedTerminal) and not self.child.closed:
            self.child.close()  # its master end (pexpect.spawn closes its own when collected)
