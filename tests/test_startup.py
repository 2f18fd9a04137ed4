"""Start-up problems are one line on stderr that says what to do, with exit code 2 (``--debug``: the
traceback too); a failed first start loses no dev key."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli_fork import CliForks
from harness.gateway import POSTGRES_URL, GatewayProcess

BASE_ENV = {**os.environ, "COLUMNS": "200", "CAPTIVATE_LOG_LEVEL": "info"}


@pytest.fixture(scope="module", autouse=True)
def forks() -> Iterator[CliForks]:
    """``captivate-chat`` runs fork one process that imported the CLI once (each run still a process)."""
    global FORKS
    with CliForks(BASE_ENV) as FORKS:
        yield FORKS


FORKS: CliForks | None = None


def run(
    *args: str, blocked: str | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``captivate-chat ARGS``; ``blocked`` names a module made unimportable, as if its extra were missing
    (forked when the zygote never imported it, else a fresh interpreter: either way the module was never
    imported)."""
    full_env = {**BASE_ENV, **(env or {})}
    assert FORKS is not None
    if not blocked:
        return FORKS.run(list(args), env=full_env, cwd=cwd)
    forked = FORKS.run(list(args), env=full_env, cwd=cwd, blocked=blocked)
    if forked is not None:
        return forked
    code = (
        f"import sys; sys.modules[{blocked!r}] = None; "
        + "from captivate_chat_api.cli import main; sys.argv = ['captivate-chat', *sys.argv[1:]]; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=full_env,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe is closed


def test_port_in_use(tmp_path: Path, busy_port: int) -> None:
    result = run("serve", "--port", str(busy_port), "--database", f"sqlite:///{tmp_path / 'gw.db'}")
    assert_one_line(result, f"port {busy_port} is in use", "--port")


def test_first_start_on_a_busy_port_loses_no_dev_key(tmp_path: Path, busy_port: int) -> None:
    database = tmp_path / "first.db"
    failed = run("serve", "--port", str(busy_port), "--database", f"sqlite:///{database}")
    assert_one_line(failed, "is in use")
    assert "Dev API key" not in failed.stdout
    gateway = GatewayProcess(database, []).start()  # the next start, on a free port
    try:
        banner = "".join(gateway.stdout)
        assert re.search(r"Dev API key \(shown once, stored hashed\): cck_\S+", banner), banner
        assert "printed on the first start" not in banner
    finally:
        gateway.stop()


def test_unknown_database_scheme() -> None:
    assert_one_line(
        run("serve", "--port", "0", "--database", "mysql://db.internal/chat"), "'mysql'", "sqlite:///PATH"
    )
    debug = run(
        "serve", "--port", "0", "--database", "mysql://db.internal/chat", env={"CAPTIVATE_LOG_LEVEL": "debug"}
    )
    assert debug.returncode == 2 and "Traceback" in debug.stderr  # the env twin of --debug
    assert debug.stderr.strip().splitlines()[-1].startswith("error: unsupported database URL scheme")


def test_sqlite_url_without_a_path() -> None:
    assert_one_line(
        run("serve", "--port", "0", "--database", "sqlite:///"), "names no file", "sqlite:///PATH"
    )


def test_database_folder_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run("serve", "--port", "0", "--database", f"sqlite:///{blocker / 'gw.db'}")
    assert_one_line(result, "is a file, not a folder", "--database")
    # a folder nobody (not even root) may create files in
    assert_one_line(
        run("serve", "--port", "0", "--database", "sqlite:////proc/captivate-test.db"), "/proc", "--database"
    )


def make_read_only(path: Path) -> None:
    """A database file the gateway cannot write: immutable for root (permissions do not stop root), else
    read-only permissions on it and its folder."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        path.parent.chmod(0o555)
        return
    chattr = shutil.which("chattr")
    done = (
        subprocess.run([chattr, "+i", str(path)], check=False, capture_output=True, text=True)
        if chattr
        else None
    )
    if done is None or done.returncode != 0:
        pytest.skip(
            f"cannot make {path} read-only for root here (chattr +i: {done.stderr if done else 'missing'})"
        )


def undo_read_only(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)
    else:
        path.parent.chmod(0o755)
        path.chmod(0o644)


def test_read_only_database(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    database = folder / "gw.db"
    url = f"sqlite:///{database}"
    assert run("keys", "create", "--name", "shop", "--database", url).returncode == 0
    make_read_only(database)
    try:
        assert_one_line(run("serve", "--port", "0", "--database", url), "read-only", "--database")
        debug = run("serve", "--port", "0", "--database", url, "--debug")
        assert (
            debug.returncode == 2
            and "Traceback" in debug.stderr
            and "read-only" in debug.stderr.splitlines()[-1]
        )
    finally:
        undo_read_only(database)


def test_postgresql_not_listening() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    assert_one_line(
        run("serve", "--port", "0", "--database", url), "cannot connect to PostgreSQL", "is it running"
    )


def test_missing_extras(tmp_path: Path) -> None:
    assert_one_line(
        run("serve", "--port", "0", "--database", POSTGRES_URL, blocked="asyncpg"),
        "captivate-chat-api[postgres]",
    )
    result = run(
        "serve",
        "--port",
        "0",
        "--database",
        f"sqlite:///{tmp_path / 'gw.db'}",
        "--broker",
        "redis://127.0.0.1:6379/0",
        blocked="redis",
    )
    assert_one_line(result, "captivate-chat-api[redis]")


def test_broker_not_listening(tmp_path: Path) -> None:
    result = run(
        "serve",
        "--port",
        "0",
        "--database",
        f"sqlite:///{tmp_path / 'gw.db'}",
        "--broker",
        f"redis://127.0.0.1:{closed_port()}/0",
    )
    assert_one_line(result, "cannot reach the broker", "connection refused")


def test_bad_agent_is_refused_at_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    assert_one_line(
        run("serve", "--port", "0", "--database", url, "--agent", "carrier-pigeon"), "unknown agent spec"
    )
    missing = run("serve", "--port", "0", "--database", url, "--agent", "python:no_such_agent_module:answer")
    assert_one_line(missing, "no module no_such_agent_module")
    (tmp_path / "broken_agent.py").write_text("answer = 42\n")
    not_callable = run(
        "serve", "--port", "0", "--database", url, "--agent", "python:broken_agent:answer", cwd=tmp_path
    )
    assert_one_line(not_callable, "is not callable")


def test_keys_commands_on_a_bad_database() -> None:
    assert_one_line(run("keys", "list", "--database", "mysql://nowhere"), "'mysql'")
    assert_one_line(run("keys", "list", "--database", "sqlite:////proc/nope.db"), "/proc")
