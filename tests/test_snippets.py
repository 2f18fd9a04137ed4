"""What a newcomer pastes runs as pasted: the banner's npm and Python programs against the gateway that
printed them, and the README's code blocks, which are copies of examples/ (run by tests/test_examples.py;
the docs include examples/ files directly, so they cannot drift)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from harness.gateway import GatewayProcess
from test_examples import EXAMPLES, ROOT, run_program


def banner_program(banner: str, after: str, before: str) -> str:
    start = banner.index(after) + len(after)
    return banner[start : banner.index(before, start)].strip("\n") + "\n"


def test_banner_snippets_run_as_pasted(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gw.db", []).start()
    try:
        banner = "".join(gateway.stdout)
        python = banner_program(banner, "then `python app.py`:\n", "\n\nCtrl+C stops")
        npm = banner_program(banner, "then `node app.js`:\n", "\n\nPython (this SDK)")
        (tmp_path / "app.py").write_text(python)
        ran = subprocess.run(
            [sys.executable, "app.py"], check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert ran.returncode == 0 and ran.stdout.strip() == "You said: Hello!", ran.stdout + ran.stderr
        (tmp_path / "app.js").write_text(npm)
        ran = run_program(
            tmp_path / "app.js", "not-read: the key is in the snippet", "http://unused.invalid", tmp_path
        )
        assert ran.returncode == 0 and "ai_agent You said: Hello!" in ran.stdout, ran.stdout + ran.stderr
    finally:
        gateway.stop()


def test_readme_code_blocks_are_examples() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = dict(re.findall(r"```(python|js)\n(.*?)```", readme, re.DOTALL))
    assert blocks["python"] == (EXAMPLES / "quickstart.py").read_text()
    assert blocks["js"] == (EXAMPLES / "quickstart.cjs").read_text()


def test_docs_include_the_examples() -> None:
    """Each example appears in the docs, included from its file (pymdownx.snippets)."""
    docs = "".join(page.read_text() for page in (ROOT / "docs").glob("*.md"))
    for example in sorted(EXAMPLES.glob("*.*")):
        assert f'--8<-- "examples/{example.name}"' in docs, f"{example.name} is not included in any docs page"
