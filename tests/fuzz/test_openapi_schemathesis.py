"""schemathesis against the live gateway's own OpenAPI description (``/openapi.json``).

Every HTTP operation is called with generated (valid and invalid) input and real credentials: no answer
is a 5xx, every status and content type is one the description declares, and a response whose
description has a schema matches it (errors: ``{error_code, error_desc}``). Push routes take a ``push``
agent token, the rest a ``human`` one (plus ``x-api-key``), so schemathesis runs once for each.

Larger: ``CAPTIVATE_SCHEMATHESIS_EXAMPLES=200 .venv/bin/pytest tests/fuzz/test_openapi_schemathesis.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fuzzkit import TALLY, Target

from harness.tokens import add_token

CHECKS = (
    "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,"
    "unsupported_method"
)
PUSH_ROUTES = "^/api/channel/"
MEASURE_MEMORY = False


@pytest.mark.parametrize("routes", ["push", "others"])
def test_openapi_operations_conform(fuzz_target: Target, routes: str, tmp_path: Path) -> None:
    role = "push" if routes == "push" else "human"
    token = asyncio.run(add_token(fuzz_target.database, fuzz_target.key, role))
    examples = os.environ.get("CAPTIVATE_SCHEMATHESIS_EXAMPLES", "10")
    command = [
        str(Path(sys.executable).with_name("st")), "run", f"{fuzz_target.gateway.http_url}/openapi.json",
        "-H", f"x-api-key: {fuzz_target.key}", "-H", f"x-agent-token: {token}",
        "--checks", CHECKS, "--max-examples", examples, "--phases", "examples,coverage,fuzzing",
        "--generation-database", "none", "--no-color", "--workers", "1",
        "--include-path-regex" if routes == "push" else "--exclude-path-regex", PUSH_ROUTES,
    ]  # fmt: skip
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=tmp_path, timeout=170)
    summary = done.stdout[done.stdout.rfind("SUMMARY") :]
    print(summary)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    generated = re.search(r"(\d+) generated", summary)
    assert generated, summary
    TALLY[f"schemathesis_{routes}"] += int(generated.group(1))
    assert fuzz_target.gateway.proc is not None and fuzz_target.gateway.proc.poll() is None
