"""Shared by the npm interop tests: install ``captivate-chat-api@7.0.0`` and run a Node script that drives it.

The package is installed from the npm registry at test time into ``tests/interop/.npm/`` (ignored by git).
Without node/npm the tests skip, except under CI (``CI=true``) where they fail.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.gateway import in_ci

HERE = Path(__file__).resolve().parent
PREFIX = HERE / ".npm"
PACKAGE = "captivate-chat-api"
VERSION = "7.0.0"
INSTALL_TIMEOUT = 180.0


def unavailable(reason: str) -> None:
    """Skip, or fail under CI, because the npm client cannot run here."""
    if in_ci():
        pytest.fail(f"CI=true and the npm interop test cannot run: {reason}")
    pytest.skip(reason)


def installed_version(name: str) -> str | None:
    manifest = PREFIX / "node_modules" / name / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_client() -> str:
    """node's path, with captivate-chat-api@7.0.0 (and ws) installed under tests/interop/.npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("node and npm are needed to run the published npm client (not found on PATH)")
    assert node is not None and npm is not None
    version = subprocess.run(
        [node, "--version"], check=False, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < 18:
        unavailable(f"node >= 18 is needed (global fetch); found {version or 'unknown'}")
    PREFIX.mkdir(exist_ok=True)
    with (PREFIX / ".install.lock").open("w") as lock:  # pytest-xdist workers install once, one at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        install(npm)
    return node


def install(npm: str) -> None:
    if installed_version(PACKAGE) == VERSION and installed_version("ws") is not None:
        return
    command = [npm, "install", "--prefix", str(PREFIX), f"{PACKAGE}@{VERSION}", "--no-audit", "--no-fund"]
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        unavailable(f"`{' '.join(command[1:])}` did not finish within {INSTALL_TIMEOUT:g} s")
        raise  # unreachable: unavailable() skips or fails
    if done.returncode != 0 or installed_version(PACKAGE) != VERSION or installed_version("ws") is None:
        unavailable(
            f"`npm install {PACKAGE}@{VERSION}` failed (exit {done.returncode};"
            " is the npm registry reachable?):\n" + (done.stderr or done.stdout)[-2000:]
        )


def run_script(
    script: Path, env: dict[str, str], *, timeout: float, context: Callable[[], str] = str
) -> dict[str, Any]:
    """Run a Node script built on npm_harness.cjs; its JSON result (the last line of stdout).

    Fails the test with the script's output (and ``context()``, e.g. the gateway's log) when the script
    timed out, printed no JSON, or reported a fatal error or its watchdog.
    """
    node = ensure_client()
    try:
        done = subprocess.run(
            [node, str(script)],
            check=False,
            cwd=HERE,
            env={**env, "CCA_NPM_PREFIX": str(PREFIX)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script.name} did not finish within {timeout:g} s; stderr:\n{exc.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        results: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        pytest.fail(
            f"{script.name} exited {done.returncode} without its JSON result.\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}\n{context()[-3000:]}"
        )
    for problem in ("_fatal", "_watchdog"):
        if problem in results:
            pytest.fail(f"{script.name}: {results[problem]}\nstderr:\n{done.stderr[-3000:]}")
    assert done.returncode == 0, f"{script.name} exited {done.returncode}; stderr:\n{done.stderr[-3000:]}"
    return results


def step(results: dict[str, Any], name: str) -> Any:
    """The result of one client call; fails with the call's name and error if it threw."""
    assert name in results, f"{name}: the script did not reach this call (an earlier setup call failed?)"
    result = results[name]
    if isinstance(result, dict) and set(result) == {"error"}:
        pytest.fail(f"npm client call `{name}` failed: {result['error']}")
    return result
