"""The README opens with the two commands, and CI runs the README's test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:sh|bash)\n(.*?)```", text, re.DOTALL)
    assert first_block, "README must open with a shell block"
    return [line for line in first_block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_run_and_test_commands() -> None:
    run, test = readme_commands()
    assert "captivate-chat serve" in run and re.search(r"\[[^]]*\bserver\b[^]]*\]", run)
    assert "pytest" in test
    # mypy is its own step, before pytest: a type error fails the command, and the suite's own mypy test
    # (tests/test_static.py) then reads a warm cache instead of spending ~15 CPU-s inside pytest
    steps = [step.strip() for step in test.split("&&")]
    assert steps[-2:] == [".venv/bin/mypy", ".venv/bin/pytest -n auto"], steps


def test_readme_is_a_front_page() -> None:
    """The README stays a short front page; the rest lives in the docs site."""
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) < 10_000
    assert "../shared" not in text
    for target in re.findall(r"\]\(((?:docs/|[A-Z]+\.md)[^)#]*)", text):
        assert (ROOT / target).exists(), f"README links to a missing file: {target}"


def test_ci_runs_the_readme_test_command() -> None:
    _, test = readme_commands()
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()
