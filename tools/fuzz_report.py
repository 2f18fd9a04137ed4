"""Run the hostile-input suite (tests/fuzz) at a chosen size and print its report.

    .venv/bin/python tools/fuzz_report.py                      # thousands of cases (profile fuzz-large)
    .venv/bin/python tools/fuzz_report.py --examples 5000 --schemathesis-examples 200 --out fuzz.json

The JSON (``{"fuzz_cases": N, "failures": F, ...}``) is what ``tools/reliability_report.py --fuzz-json``
reads. The exit status is pytest's: non-zero when any case failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="fuzz-large", choices=["fuzz-ci", "fuzz-large"])
    parser.add_argument("--examples", type=int, default=None, help="hypothesis examples per fuzz test")
    parser.add_argument("--schemathesis-examples", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="where to keep the JSON report")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per test")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="fuzz-")) / "fuzz.json"
    env = {
        **os.environ,
        "CAPTIVATE_FUZZ_PROFILE": args.profile,
        "CAPTIVATE_FUZZ_REPORT": str(out.resolve()),
        "CAPTIVATE_SCHEMATHESIS_EXAMPLES": str(args.schemathesis_examples),
    }
    if args.examples is not None:
        env["CAPTIVATE_FUZZ_EXAMPLES"] = str(args.examples)
    command = [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-s", f"--timeout={args.timeout}"]
    code = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    if not out.exists():
        print(f"no report was written (pytest exit {code})", file=sys.stderr)
        return code or 1
    report = json.loads(out.read_text())
    print(f"\nfuzz cases: {report['fuzz_cases']}, failures: {report['failures']}")
    for module, memory in report["memory"].items():
        before, after = memory["rss_before_kib"], memory["rss_after_kib"]
        print(f"gateway RSS ({module}): {before} KiB -> {after} KiB ({after - before:+d} KiB)")
    print("outcomes: " + ", ".join(f"{kind} {count}" for kind, count in report["outcomes"].items()))
    print(f"report: {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
