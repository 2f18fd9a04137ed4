"""The CLI's interactive commands (``chat``, ``console``) driven in a pseudo-terminal, as a person would."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys

import pexpect

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


class Terminal:
    """``captivate-chat ARGS`` in a pseudo-terminal (50x200); everything it printed is kept in ``screen``."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.screen = io.StringIO()
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "captivate_chat_api.cli", *args],
            env=env,
            dimensions=(50, 200),
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
