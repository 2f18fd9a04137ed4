from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzzkit import MEMORY, OUTCOMES, TALLY, Target, fuzz_env, rss_kib, warm_up

from harness.gateway import GatewayProcess, new_key

FAILED: list[str] = []


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Target]:
    """One live gateway per module (rate limits off), warmed up, with its RSS measured before fuzzing
    (unless the module sets ``MEASURE_MEMORY = False``)."""
    database = tmp_path_factory.mktemp("fuzz") / "gateway.db"
    key = new_key()
    target = Target(GatewayProcess(database, [key], env=fuzz_env()).start(), key, database)
    try:
        if getattr(request.module, "MEASURE_MEMORY", True):
            asyncio.run(warm_up(target))
            target.rss_before = rss_kib(target.pid)
        yield target
    finally:
        target.gateway.stop()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed and "tests/fuzz/" in report.nodeid.replace("\\", "/"):
        FAILED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("CAPTIVATE_FUZZ_REPORT")
    if not path:
        return
    report = {
        "fuzz_cases": sum(TALLY.values()),
        "failures": len(FAILED),
        "cases_by_test": dict(sorted(TALLY.items())),
        "failed_tests": FAILED,
        "outcomes": dict(OUTCOMES.most_common()),
        "memory": MEMORY,
        "profile": os.environ.get("CAPTIVATE_FUZZ_PROFILE", "fuzz-ci"),
    }
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
