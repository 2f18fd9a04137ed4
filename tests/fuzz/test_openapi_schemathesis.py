"""schemathesis against the live gateway's own OpenAPI description (``/openapi.json``).

Every HTTP operation is called with generated (valid and invalid) input and real credentials: no answer
is a 5xx, every status and content type is one the description declares, and a response whose
description has a schema matches it (errors: ``{error_code, error_desc}``). Push routes take a ``push``
agent token, the rest a ``human`` one (plus ``x-api-key``): one ``st run`` covers both, its config file
giving the push routes their own token (``[[operations]]`` headers), and each route set's test reads
its operations' verdicts from the run's JUnit and JSON reports. (One run instead of one per set: ``st``'s
start-up, ~2 CPU-s of imports and loading the description, is paid once; the cases are the same.)

Larger: ``CAPTIVATE_SCHEMATHESIS_EXAMPLES=200 .venv/bin/pytest tests/fuzz/test_openapi_schemathesis.py``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import subprocess
import sys
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fuzzkit import TALLY, Target

from harness.tokens import add_token

CHECKS = (
    "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,"
    "unsupported_method"
)
PUSH_ROUTES = "^/api/channel/"
UPLOAD = "POST /api/file-to-text"
"""Authenticated by the API key inside its multipart ``path`` field, which generated input cannot know:
schemathesis rightly warns that it answered only 401 (what the other tests of uploads cover)."""
MEASURE_MEMORY = False


def seed_utf8_table(storage: Path) -> None:
    """Write hypothesis's cached table of what UTF-8 encodes into ``storage`` (``HYPOTHESIS_STORAGE_DIRECTORY``):
    every code point but the surrogates U+D800–U+DFFF, each decoding back to itself. schemathesis draws its
    strings from ``st.characters(codec="utf-8")``, and without this file hypothesis builds that table by
    encoding all 1.1 M code points (``charmap.intervals_from_codec``): ~30 % of ``st run``'s CPU here, every
    run, as its storage is new each time. A hypothesis that names the file otherwise builds the table itself."""
    path = storage / "unicode_data" / unicodedata.unidata_version / "codec-v2-utf-8.json.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=1) as table:  # [encodable intervals, those that do not round-trip]
        table.write(json.dumps([[[0, 0xD7FF], [0xE000, sys.maxunicode]], []]).encode())


@dataclass
class Run:
    """One ``st run`` over every operation: its output and exit code, the JSON report (the run's
    verdict and warnings), and per operation (``"POST /api/…"``) what the JUnit report says went wrong."""

    done: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    problems: dict[str, list[str]]

    def output(self) -> str:
        return self.done.stdout[-8000:] + self.done.stderr[-2000:]


def in_set(label: str, routes: str) -> bool:
    path = label.split(" ")[-1]
    return bool(re.search(PUSH_ROUTES, path)) == (routes == "push")


@pytest.fixture(scope="module")
def schemathesis_run(fuzz_target: Target, tmp_path_factory: pytest.TempPathFactory) -> Run:
    here = tmp_path_factory.mktemp("schemathesis")
    push = asyncio.run(add_token(fuzz_target.database, fuzz_target.key, "push"))
    human = asyncio.run(add_token(fuzz_target.database, fuzz_target.key, "human"))
    config = here / "schemathesis.toml"
    config.write_text(
        f"headers = {{ x-api-key = {json.dumps(fuzz_target.key)}, x-agent-token = {json.dumps(human)} }}\n\n"
        "[[operations]]\n"
        f"include-path-regex = {json.dumps(PUSH_ROUTES)}\n"
        f"headers = {{ x-agent-token = {json.dumps(push)} }}\n"
    )
    examples = os.environ.get("CAPTIVATE_SCHEMATHESIS_EXAMPLES", "10")
    command = [
        str(Path(sys.executable).with_name("st")), "--config-file", str(config),
        "run", f"{fuzz_target.gateway.http_url}/openapi.json",
        "--checks", CHECKS, "--max-examples", examples, "--phases", "examples,coverage,fuzzing",
        "--generation-database", "none", "--no-color", "--workers", "1",
        "--report", "junit,json", "--report-junit-path", str(here / "junit.xml"),
        "--report-json-path", str(here / "report.json"),
    ]  # fmt: skip
    seed_utf8_table(here / "hypothesis")
    env = dict(os.environ, HYPOTHESIS_STORAGE_DIRECTORY=str(here / "hypothesis"))
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, cwd=here, env=env, timeout=170
    )
    print(done.stdout[done.stdout.rfind("SUMMARY") :])
    assert (here / "report.json").exists() and (here / "junit.xml").exists(), (
        done.stdout[-8000:] + done.stderr
    )
    report = json.loads((here / "report.json").read_text())
    problems: dict[str, list[str]] = {}
    for case in ET.parse(here / "junit.xml").getroot().iter("testcase"):
        problems[case.attrib["name"]] = [
            f"{child.tag}: {child.attrib.get('message', '')} {child.text or ''}".strip()
            for child in case
            if child.tag in ("failure", "error", "skipped")
        ]
    TALLY["schemathesis"] = report["test_cases"]["generated"]
    return Run(done, report, problems)


@pytest.mark.parametrize("routes", ["push", "others"])
def test_openapi_operations_conform(fuzz_target: Target, schemathesis_run: Run, routes: str) -> None:
    run, report = schemathesis_run, schemathesis_run.report
    assert report["complete"] and report["stop_reason"] == "completed", run.output()
    assert report["operations"]["selected"] == report["operations"]["total"] == len(run.problems), report
    mine = {label: problems for label, problems in run.problems.items() if in_set(label, routes)}
    assert mine, f"no {routes} operation in {sorted(run.problems)}"
    failed = {label: problems for label, problems in mine.items() if problems}
    assert not failed, json.dumps(failed, indent=1)[:6000] + "\n" + run.output()
    listed = {label for group in report["failures"] for label in group["operations"]}
    assert not {label for label in listed if in_set(label, routes)}, report["failures"]
    # the exit code is the whole run's: anything that made it fail is in the other route set's test
    assert run.done.returncode == 0 or any(map(any, run.problems.values())) or listed, run.output()
    # this set's token was the right one: none of its operations answered only 401/403
    refused = [label for label in report["warnings"]["missing_auth"] if in_set(label, routes)]
    assert set(refused) <= {UPLOAD}, refused
    assert report["test_cases"]["generated"] >= len(run.problems), report["test_cases"]
    assert fuzz_target.gateway.proc is not None and fuzz_target.gateway.proc.poll() is None
