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

How the Python processes start: in the suite, every one but ``quickstart.py``'s own run (a fresh
interpreter, so an example's cold start stays covered) is forked from this test process's gateway fork
server (tests/harness/forkserver.py), which imported the gateway, FastAPI, uvicorn and (once, as
``preload``) the SDK a client example imports: ~0.3-0.7 CPU-s of imports less a process. The child is
still a process of its own on real sockets and runs the program as ``python FILE`` (``runpy``,
``__name__ == "__main__"``, the file's folder first on ``sys.path``) or ``python -m MODULE`` would, with
the test's arguments, environment, working directory, pipes and exit code; the examples read their
settings (``CAPTIVATE_*``) when they run, and the libraries imported before the fork read none of these
at import time (the ``PYTHON*`` variables, which an interpreter reads at start, are the fork server's own,
else it starts a fresh interpreter). An example's own gateway is forked too, in examples/ (a
``python:`` module of the working directory is found as by ``captivate-chat serve`` there): the
installed ``captivate-chat`` script's own start-up, with a ``python:`` agent of its working directory,
is tests/test_cli.py's (``test_serve_agent_rule_and_a_truthful_banner``) and tests/test_startup.py's.
``CAPTIVATE_TEST_FRESH_GATEWAYS=1`` starts every one in a fresh interpreter.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli_child import CLIENT_WARM
from harness.forkserver import ForkedProcess, ForkServer, Job
from harness.gateway import GatewayProcess, new_key

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(Path(__file__).resolve().parent / "interop"))
from npm_runner import PREFIX, ensure_client

HEADER = re.compile(r"^(?:#|//) example-([a-z-]+): (.+)$")
PROGRAMS = sorted(p for pattern in ("*.py", "*.mjs", "*.cjs") for p in EXAMPLES.glob(pattern))
RUN_TIMEOUT = 60.0  # the convention is 30 s; the margin is for a loaded CI machine
FRESH = {"quickstart.py"}
"""Examples whose own test runs them in a fresh interpreter, never forked (a cold start stays covered)."""
SDK = ("captivate_chat_api", "captivate_chat_api.sync", *CLIENT_WARM)
"""What a client example imports (the SDK, its blocking facade, httpx's transport): the fork server's
``preload``."""


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


def imports(path: Path) -> tuple[str, ...]:
    """The modules ``path`` imports at its top level (an example server's FastAPI, its agent library)."""
    names: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return tuple(names)


def run_program(
    path: Path, key: str, base_url: str, tmp_path: Path, fresh: bool = True
) -> subprocess.CompletedProcess[str]:
    """``path`` run as a user runs it (``python FILE`` in examples/, or node), with ``CAPTIVATE_API_KEY``
    and ``CAPTIVATE_BASE_URL`` set; a Python one forked from the fork server unless ``fresh``."""
    env = {**os.environ, "CAPTIVATE_API_KEY": key, "CAPTIVATE_BASE_URL": base_url}
    # a pytest run an example starts (testing_kit.py's) without hypothesis's plugin, installed for this suite,
    # not by a user of the kit (~0.25 CPU-s of imports; schemathesis's is off in pyproject.toml's addopts)
    env["PYTEST_ADDOPTS"] = " ".join(filter(None, [env.get("PYTEST_ADDOPTS"), "-p no:hypothesispytest"]))
    if path.suffix == ".py":
        server = None if fresh else ForkServer.for_env(env)
        if server is not None:  # `python FILE`, forked (see the module's docstring)
            try:
                return server.run(Job([], env, EXAMPLES, SDK, script=path), timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                pytest.fail(
                    f"{path.name} did not end within {RUN_TIMEOUT:g} s:\n{exc.stdout!r}\n{exc.stderr!r}"
                )
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
                tmp_path / "gw.db", [key], args=fill(spec["gateway-args"]).split(), cwd=EXAMPLES
            ).start()
            gateway = own
        if "server" in spec:
            secret = re.search(r"webhook secret of \S+ \(shown once\): (whsec_\S+)", "".join(gateway.stdout))
            env = {**os.environ, "CAPTIVATE_BASE_URL": gateway.http_url}
            if secret:
                env["CAPTIVATE_WEBHOOK_SECRET"] = secret.group(1)
            server = start_server(fill(spec["server"]).split(), env, preload=imports(path))
            wait_for_port(agent_port, server)
        result = run_program(client, key, gateway.http_url, tmp_path, fresh=path.name in FRESH)
        assert result.returncode == 0, (
            f"{client.name}:\n{result.stdout}\n{result.stderr}\n{gateway.logs()[-3000:]}"
        )
        if "expect" in spec:
            assert spec["expect"] in result.stdout, result.stdout + result.stderr
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
            if server.stdout is not None:
                server.stdout.close()
        if own is not None:
            own.stop()


def start_server(
    command: list[str], env: dict[str, str], preload: tuple[str, ...]
) -> subprocess.Popen[str] | ForkedProcess:
    """An example's server process (stdout and stderr into one pipe) in examples/: ``python -m MODULE
    ARGS`` or ``python FILE ARGS`` forked where the fork server may (``preload``: what the fork server
    imports first; see the module's docstring), else (and any other command) as given."""
    server = ForkServer.for_env(env) if command[0] == sys.executable and len(command) > 1 else None
    if server is not None:
        if command[1] == "-m":
            return server.spawn(
                Job(command[3:], env, EXAMPLES, preload, module=command[2]), merge_stderr=True
            )
        if not command[1].startswith("-"):
            job = Job(command[2:], env, EXAMPLES, preload, script=EXAMPLES / command[1])
            return server.spawn(job, merge_stderr=True)
    return subprocess.Popen(
        command, cwd=EXAMPLES, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def wait_for_port(port: int, process: subprocess.Popen[str] | ForkedProcess, timeout: float = 30.0) -> None:
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
