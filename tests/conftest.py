from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness.gateway import GatewayProcess, new_key

# Scheduling with `-n` (and no `--dist` given): each file runs on one worker (`--dist loadfile`), so a
# module's gateway starts once, and files are handed out in this order, longest first, so no long file
# starts last. Seconds per file, measured on 2 cores (`--durations=0`, summed per
# file); a file not named here runs after these, in collection order.
LONGEST_FIRST = (
    "tests/test_examples.py",  # 42 s: each example a process, two npm ones wait on the npm client's 10 s timer
    "tests/test_cli.py",  # 38 s
    "tests/test_terminal_chat.py",  # 31 s
    "tests/server/agents/test_webhook.py",  # 25 s
    "tests/reliability/test_crash_harness.py",  # 22 s
    "tests/test_static.py",  # 21 s: mypy over a cold cache
    "tests/files/test_files_http.py",  # 21 s
    "tests/server/agents/test_openai_agent.py",  # 20 s
    "tests/server/test_store_faults.py",  # 19 s
    "tests/web/test_widget_and_content.py",  # 19 s
    "tests/test_startup.py",  # 18 s
    "tests/client/test_resilience.py",  # 15 s
    "tests/web/test_web_files.py",  # 15 s
    "tests/test_snippets.py",  # 12 s
    "tests/test_console.py",  # 12 s
    "tests/test_testing_kit.py",  # 11 s
    "tests/scale/test_cross_node.py",  # 10 s
    "tests/scale/test_shutdown_under_load.py",  # 10 s
    "tests/scale/test_workers.py",  # 10 s
)
WORKERS_PER_CORE = 2
"""Most tests wait (on a gateway, node, a browser or a timer) more than they compute."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers per core (``PYTEST_XDIST_AUTO_NUM_WORKERS`` still overrides)."""
    configured = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if configured.isdigit():
        return int(configured)
    return WORKERS_PER_CORE * len(os.sched_getaffinity(0))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """With ``-n`` and no ``--dist``: ``--dist loadfile --no-loadscope-reorder`` (runs before xdist's own)."""
    if getattr(config.option, "numprocesses", None) and config.option.dist == "no":
        config.option.dist = "loadfile"
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first (a stable sort: within a file, and among the others, collection order)."""
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    root = config.rootpath
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(rank)))


@pytest.fixture(scope="module")
def tenant_keys() -> list[str]:
    """Two API keys, each its own channel (tenant)."""
    return [new_key(), new_key()]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, tenant_keys: list[str]) -> Iterator[GatewayProcess]:
    """A real gateway process for the module, on a free port, with a fresh SQLite file."""
    db = tmp_path_factory.mktemp("gw") / "gateway.db"
    process = GatewayProcess(db, tenant_keys).start()
    yield process
    process.stop()


@pytest.fixture
def api_key(tenant_keys: list[str]) -> str:
    return tenant_keys[0]
