"""``captivate-chat`` runs as real child processes without paying Python's start-up each time.

A ``CliForks`` process imports the CLI (and the server it starts) once; each ``run`` forks it: the child
takes the arguments, environment and working directory, writes to its own stdout/stderr files (fd 1 and 2,
so whatever writes there is captured) and ends with ``main()``'s exit code, as ``captivate-chat ARGS``
would. A start-up error therefore comes from a real process, its exit status and its stderr; what differs
from a fresh interpreter is only that the imports were done before the fork (the fresh start-up itself runs
in every ``GatewayProcess`` of the suite).
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Self, overload

from .cli_child import PRELUDE

IMPORTED = 86
"""A ``blocked`` run's exit code when the zygote had imported the module already (``run`` returns None)."""

SERVER = r"""
import json, os, sys, traceback
import captivate_chat_api.cli as cli
import captivate_chat_api.server.serve, captivate_chat_api.server.app  # what `serve` imports next

for line in sys.stdin:
    job = json.loads(line)
    out_path, err_path = job["stdout"], job["stderr"]
    pid = os.fork()
    if pid == 0:  # the child: becomes `captivate-chat ARGS`
        try:
            for fd, path in ((1, out_path), (2, err_path)):
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(handle, fd)
                os.close(handle)
            sys.stdin = open(os.devnull)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        blocked = job.get("blocked")
        if blocked:  # made unimportable, as if its extra were missing: only if this process never imported it
            if blocked in sys.modules:
                os._exit(IMPORTED)
            sys.modules[blocked] = None
        become_cli(job, "captivate-chat")
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class CliForks:
    """A zygote for ``captivate-chat`` runs; ``with CliForks(env) as forks: forks.run(...)``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.tmp = tempfile.TemporaryDirectory(prefix="cli-forks-")

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + f"IMPORTED = {IMPORTED}\n" + SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.tmp.cleanup()

    @overload
    def run(
        self, args: list[str], *, env: dict[str, str], cwd: Path | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]: ...
    @overload
    def run(
        self,
        args: list[str],
        *,
        env: dict[str, str],
        cwd: Path | None = None,
        timeout: float = 60,
        blocked: str,
    ) -> subprocess.CompletedProcess[str] | None: ...
    def run(
        self,
        args: list[str],
        *,
        env: dict[str, str],
        cwd: Path | None = None,
        timeout: float = 60,
        blocked: str | None = None,
    ) -> subprocess.CompletedProcess[str] | None:
        """``captivate-chat ARGS`` in a forked child with exactly ``env`` as its environment; ``blocked``: a
        module the child cannot import (``sys.modules[NAME] = None`` before the CLI runs, as a fresh
        interpreter that blocks it first would be, since the zygote's imports did not import it), or None
        when the zygote had imported it (then only a fresh interpreter can block it)."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        out, err = Path(self.tmp.name) / "stdout", Path(self.tmp.name) / "stderr"
        job: dict[str, Any] = {
            "args": args,
            "env": env,
            "cwd": str(cwd) if cwd else None,
            "stdout": str(out),
            "stderr": str(err),
            "blocked": blocked,
        }
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            raise subprocess.TimeoutExpired(["captivate-chat", *args], timeout)
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"the CLI zygote died (exit {self.proc.poll()})")
        code = json.loads(answer)["returncode"]
        if blocked and code == IMPORTED:
            return None
        return subprocess.CompletedProcess(
            ["captivate-chat", *args], code, out.read_text(errors="replace"), err.read_text(errors="replace")
        )
