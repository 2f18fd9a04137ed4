"""bandit over src/ finds nothing that is not waived with its reason (``# nosec BXXX`` or ``[tool.bandit]``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bandit_finds_nothing_unjustified() -> None:
    bandit = Path(sys.executable).with_name("bandit")
    command = [str(bandit), "-c", "pyproject.toml", "-r", "src", "-f", "json", "-q"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT, timeout=170)
    report = json.loads(done.stdout)
    findings = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} ({r['issue_severity']}): {r['issue_text']}"
        for r in report["results"]
    ]
    assert not findings, "\n".join(findings)
    assert not report["errors"], report["errors"]
    assert report["metrics"]["_totals"]["loc"] > 1000  # it did scan the sources
