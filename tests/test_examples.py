"""Every program in examples/ runs against a live gateway and ends by itself with exit 0.

Found by glob, so a new example is picked up without touching this file: ``*.py`` run with this Python,
``*.mjs`` / ``*.cjs`` with node and the published npm client (installed as tests/interop does it). Each
reads ``CAPTIVATE_API_KEY`` and ``CAPTIVATE_BASE_URL``. An example that needs a gateway of its own says
so in header comments (``# example-KEY: VALUE`` or ``// example-KEY: VALUE``, see CONTRIBUTING.md):

- ``example-gateway-args``: more ``captivate-chat serve`` flags (run in examples/, so ``python:`` finds it)
- ``example-server``: a process to start first (the example itself is then a server, not a client)
- ``example-client``: the example program that exercises it (default: the file itself)
- ``example-expect``: text the client's output must contain

``{python}`` and ``{agent_port}`` in those values are replaced.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.gateway import GatewayProcess, new_key

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(Path(__file__).resolve().parent / "interop"))
from npm_runner import PREFIX, ensure_client

HEADER = re.compile(r"^(?:#|//) example-([a-z-]+): (.+)$")
PROGRAMS = sorted(p for pattern in ("*.py", "*.mjs", "*.cjs") for p in EXAMPLES.glob(pattern))
RUN_TIMEOUT = 60.0  # the convention is 30 s; the margin is for a loaded CI machine


def headers(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = HEADER.match(line)
        if match is None:
            break
        found[match.group(1)] = match.group(2)
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_program(path: Path, key: str, base_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAPTIVATE_API_KEY": key, "CAPTIVATE_BASE_URL": base_url}
    if path.suffix == ".py":
        command, cwd = [sys.executable, str(path)], EXAMPLES
    else:
        node = ensure_client()
        workdir = tmp_path / "node"
        workdir.mkdir(exist_ok=True)
        if not (workdir / "node_modules").exists():
            (workdir / "node_modules").symlink_to(PREFIX / "node_modules")  # ESM ignores NODE_PATH
        shutil.copy(path, workdir / path.name)
        command, cwd = [node, path.name], workdir
    try:
        return subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=cwd, env=env
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{path.name} did not end within {RUN_TIMEOUT:g} s:\n{exc.stdout!r}\n{exc.stderr!r}")


@pytest.fixture(scope="module")
def examples_gateway(gateway: GatewayProcess, tenant_keys: list[str]) -> tuple[GatewayProcess, str]:
    """The gateway the examples without headers share (the worker's, with this module's own key)."""
    return gateway, tenant_keys[0]


def test_examples_are_found() -> None:
    names = {p.name for p in PROGRAMS}
    assert {"quickstart.py", "quickstart.cjs", "async_sdk.py", "sync_sdk.py", "testing_kit.py"} <= names


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_example_runs(path: Path, examples_gateway: tuple[GatewayProcess, str], tmp_path: Path) -> None:
    spec = headers(path)
    agent_port = free_port()
    fill = lambda text: text.format(python=sys.executable, agent_port=agent_port)
    client = EXAMPLES / spec.get("client", path.name)
    gateway, key = examples_gateway
    own: GatewayProcess | None = None
    server: subprocess.Popen[str] | None = None
    try:
        if "gateway-args" in spec:
            key = new_key()
            own = GatewayProcess(
                tmp_path / "gw.db",
                [key],
                args=fill(spec["gateway-args"]).split(),
                cwd=EXAMPLES,
                console_script=True,
            ).start()
            gateway = own
        if "server" in spec:
            secret = re.search(r"webhook secret of \S+ \(shown once\): (whsec_\S+)", "".join(gateway.stdout))
            env = {**os.environ, "CAPTIVATE_BASE_URL": gateway.http_url}
            if secret:
                env["CAPTIVATE_WEBHOOK_SECRET"] = secret.group(1)
            server = subprocess.Popen(
                fill(spec["server"]).split(),
                cwd=EXAMPLES,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            wait_for_port(agent_port, server)
        result = run_program(client, key, gateway.http_url, tmp_path)
        assert result.returncode == 0, (
            f"{client.name}:\n{result.stdout}\n{result.stderr}\n{gateway.logs()[-3000:]}"
        )
        if "expect" in spec:
            assert spec["expect"] in result.stdout, result.stdout + result.stderr
    finally:
        if server is not None:
            server.terminate()
            server.communicate(timeout=10)  # waits, and closes its pipe
        if own is not None:
            own.stop()


def wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"the example's server exited ({process.returncode}):\n{process.stdout.read() if process.stdout else ''}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the example's server did not listen on {port} within {timeout:g} s")
