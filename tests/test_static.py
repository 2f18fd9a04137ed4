"""Static checks CI holds the code to: ``ruff check`` over src and tests, ``ruff format --check`` over the
whole tree, ``mypy --strict`` over all of src."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def test_ruff_finds_nothing() -> None:
    done = run("ruff", "check", "--no-cache", "src", "tests")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_tree_is_formatted() -> None:
    done = run("ruff", "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, "run `ruff format .`\n" + done.stdout + done.stderr


@pytest.mark.timeout(600)  # a cold cache is ~15 s of CPU: minutes on a machine shared with the other workers
def test_mypy_strict_over_all_of_src() -> None:
    """The README's test command runs ``mypy`` as its own step first, so here the cache is warm (< 1 CPU-s;
    mypy still re-checks whatever changed since)."""
    done = run("mypy")  # files and strictness: [tool.mypy] in pyproject.toml
    assert done.returncode == 0, done.stdout + done.stderr
