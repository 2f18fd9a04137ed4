from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Python's bytecode cache on, whatever the environment says (PYTHONDONTWRITEBYTECODE=1): otherwise every
# xdist worker rewrites and compiles every test module again (~3 CPU-s each) and every gateway or CLI child
# compiles the package again. The variable is dropped before the workers and children start.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    sys.dont_write_bytecode = False

import captivate_chat_api
import harness.forkserver
from harness.bytecode import precompile_for_workers, precompile_package
from harness.forkserver import ForkServer, forking
from harness.gateway import GatewayProcess, new_key
from harness.tokens import add_keys

# Scheduling with `-n` (and no `--dist` given): each file runs on one worker (`--dist loadfile`), so a
# module's gateway starts once, and files are handed out longest first, so no long file starts last. The
# seconds per file come from DURATIONS, which the suite itself rewrites after a full run that passed (see
# pytest_sessionfinish), so the order follows the suite as it changes; a file not in it runs last.
DURATIONS = Path(__file__).with_name("durations.json")
DRIFT = 0.3  # rewrite DURATIONS when a file's seconds moved by more than this share (and 2 s), or files came or went
# gateways fork from one interpreter that imported them (harness/forkserver.py)
harness.forkserver.FORK = True
SPARE_WORKERS = 2
"""Workers beyond one per core: a test that waits (on a gateway, node, a browser or a timer) leaves its core to
the spares. On 2 cores, back to back: 4 workers 102.4 s, 3 workers 106.4 s (and 102.4 / 107.8 s with the
units picked by their CPU share, which gained nothing and was left out); each worker more costs ~4.3 CPU-s
(start-up and collecting every test), since the fork servers are shared."""


def pytest_configure(config: pytest.Config) -> None:
    """The xdist controller writes the tree's bytecode once (``harness.bytecode``: in a fresh clone each
    worker would compile it all itself, at once) and starts the fork servers its workers share
    (``ForkServer.share``), as it starts them: one import of the gateway (and of the CLI's clients) for the
    run, not one per worker. The package is compiled before the fork servers import it; the tests while
    they do."""
    if not getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput"):
        return
    precompile_package(Path(captivate_chat_api.__file__).parent)
    if forking():
        ForkServer.share(dict(os.environ))
    precompile_for_workers(config, Path(__file__).parent)


def pytest_unconfigure(config: pytest.Config) -> None:
    """In every process of the run (xdist workers too): end this process's fork servers (a worker's are the
    controller's, which ends them when the workers are done)."""
    ForkServer.shutdown()


@pytest.hookimpl(optionalhook=True)  # an xdist hook: ``-p no:xdist`` must still run
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core and SPARE_WORKERS more (``PYTEST_XDIST_AUTO_NUM_WORKERS`` still overrides)."""
    configured = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if configured.isdigit():
        return int(configured)
    return len(os.sched_getaffinity(0)) + SPARE_WORKERS


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """With ``-n`` and no ``--dist``: ``--dist loadfile --no-loadscope-reorder`` (runs before xdist's own)."""
    if getattr(config.option, "numprocesses", None) and config.option.dist == "no":
        config.option.dist = "loadfile"
        config.option.loadscopereorder = False


SHARED_SCOPES = ("tests/web/",)
"""Folders whose files run on one worker together: ``tests/web`` shares one Chromium and its Playwright driver
per test process (~4.5 CPU-s a launch), which four workers would each start for the file they drew."""


def scope_of(nodeid: str) -> str:
    """The unit a worker runs whole: the test's file, or the shared folder it is in."""
    path = nodeid.split("::", 1)[0]
    return next((folder for folder in SHARED_SCOPES if path.startswith(folder)), path)


@pytest.hookimpl(optionalhook=True)  # an xdist hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadfile``, with each of SHARED_SCOPES as one unit (None: xdist's own for other modes)."""
    if config.option.dist != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return FileScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest units first (a file, or a shared folder's files together: their seconds summed; a stable
    sort: within a unit, and among the unknown ones, collection order)."""
    unit_seconds: dict[str, float] = {}
    for name, value in _read_durations().items():
        unit_seconds[scope_of(name)] = unit_seconds.get(scope_of(name), 0.0) + value
    root = config.rootpath
    items.sort(key=lambda item: -unit_seconds.get(scope_of(item.path.relative_to(root).as_posix()), 0.0))


def _read_durations() -> dict[str, float]:
    try:
        loaded = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {str(name): float(value) for name, value in loaded.items()} if isinstance(loaded, dict) else {}


_measured: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Seconds per file (setup + call + teardown); under xdist the controller sees every worker's reports."""
    name = report.nodeid.split("::", 1)[0]
    _measured[name] = _measured.get(name, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a full run that passed (all of ``tests/``, no selection), rewrite DURATIONS if it drifted."""
    config = session.config
    if hasattr(config, "workerinput") or exitstatus != 0 or not _measured:
        return
    tests = Path(__file__).parent
    if [Path(arg).resolve() for arg in config.args] not in ([tests], [config.rootpath]):
        return
    option = config.option  # (``lf`` is the cache provider's: absent under ``-p no:cacheprovider``)
    if option.keyword or option.markexpr or getattr(option, "lf", False) or option.deselect:
        return
    fresh = {name: round(value) for name, value in sorted(_measured.items(), key=lambda kv: -kv[1])}
    known = _read_durations()
    drifted = set(fresh) != set(known) or any(
        abs(fresh[name] - known[name]) > max(2.0, DRIFT * known[name]) for name in fresh
    )
    if drifted:
        DURATIONS.write_text(json.dumps(fresh, indent=0) + "\n")


@pytest.fixture(scope="module")
def tenant_keys() -> list[str]:
    """Two API keys, each its own channel (tenant)."""
    return [new_key(), new_key()]


@pytest.fixture(scope="session")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One real gateway process per xdist worker (on a free port, a fresh SQLite file), shared by the modules
    on the default ``gateway`` fixture; a module that needs other settings starts its own."""
    process = GatewayProcess(tmp_path_factory.mktemp("shared-gw") / "gateway.db", [new_key()]).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def gateway(shared_gateway: GatewayProcess, tenant_keys: list[str]) -> GatewayProcess:
    """The worker's shared gateway, with the module's own two fresh API keys (channels): what one module
    writes, no other module's keys can read, as with a gateway of its own. (Files run one at a time per
    worker, ``--dist loadfile``, so two modules never load it at once.)"""
    if shared_gateway.proc is None or shared_gateway.proc.poll() is not None:  # stopped by an earlier module
        shared_gateway.port = 0
        shared_gateway.start()
    asyncio.run(add_keys(shared_gateway.database, tenant_keys))
    return shared_gateway


@pytest.fixture
def api_key(tenant_keys: list[str]) -> str:
    return tenant_keys[0]
