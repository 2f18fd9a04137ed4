"""The combined reliability report: the crash harness and the lost-acknowledgement run, plus (when given)
the fuzzing and cross-tenant results other tools wrote as JSON.

    .venv/bin/python tools/reliability_report.py --cycles 10 --conversations 20 --senders 4 \\
        --seconds-per-cycle 3 --messages 300 --loss 0.1 [--fuzz-json F] [--bola-json B] [--json OUT]

``--fuzz-json``: an object with the number of cases tried (``fuzz_cases``, as tests/fuzz writes it with
``CAPTIVATE_FUZZ_REPORT=path.json``, or ``cases``) and of failures (``failures``; default 0).
``--bola-json``: an object with cross-tenant ``attempts`` and ``successes``. Rows for a file not given are
left out. Exit status 1 unless every count that must be zero is zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crash_harness import Options, render, run_crash, run_lost_acks, write_json


def first_int(data: dict[str, Any], names: tuple[str, ...], source: Path, default: int | None = None) -> int:
    for name in names:
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    if default is not None:
        return default
    raise SystemExit(f"{source}: expected an integer under one of {', '.join(names)}")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a JSON object")
    return data


def external_rows(fuzz: Path | None, bola: Path | None) -> tuple[list[tuple[str, Any]], dict[str, Any], bool]:
    """Rows, JSON fields and whether they pass, for the fuzzing and cross-tenant result files."""
    rows: list[tuple[str, Any]] = []
    fields: dict[str, Any] = {}
    passed = True
    if fuzz is not None:
        data = read_json(fuzz)
        cases = first_int(data, ("fuzz_cases", "cases", "cases_tried"), fuzz)
        failures = first_int(data, ("failures", "failed"), fuzz, default=0)
        rows += [("fuzz cases tried", cases), ("fuzz failures", failures)]
        fields["fuzz"] = {"cases": cases, "failures": failures}
        passed &= failures == 0
    if bola is not None:
        data = read_json(bola)
        attempts = first_int(data, ("attempts", "cross_tenant_attempts"), bola)
        successes = first_int(data, ("successes", "cross_tenant_successes"), bola)
        rows += [("cross-tenant attempts", attempts), ("cross-tenant SUCCESSES", successes)]
        fields["cross_tenant"] = {"attempts": attempts, "successes": successes}
        passed &= successes == 0
    return rows, fields, passed


def summary(crash: dict[str, Any], lost: dict[str, Any], rows: list[tuple[str, Any]], passed: bool) -> str:
    o = crash["options"]
    once = lost["acked"] - lost["lost"] - lost["duplicated"]
    table = [
        (
            "gateway SIGKILLs under load",
            (
                f"{crash['kills']} ({o['cycles']} cycles, SQLite synchronous "
                f"{o['synchronous']}, transport {o['transport']})"
            ),
        ),
        (
            "messages acknowledged (crash run)",
            (
                f"{crash['acked']} of {crash['sent']} sent "
                f"({crash['acked_after_restart']} by a restarted gateway)"
            ),
        ),
        ("lost / duplicated / reordered", f"{crash['lost']} / {crash['duplicated']} / {crash['reordered']}"),
        (
            "lost-ack run: responses dropped",
            (f"{lost['acks_lost']} of {lost['attempts']} attempts ({lost['options']['loss']:.0%} drop rate)"),
        ),
        (
            "lost-ack run: stored exactly once",
            (
                f"{once} of {lost['sent']} (lost {lost['lost']}, duplicated "
                f"{lost['duplicated']}, reordered {lost['reordered']})"
            ),
        ),
        *rows,
    ]
    lines = ["RELIABILITY REPORT", *(f"  {name:<36} {value}" for name, value in table)]
    lines.append("RESULT: " + ("PASS" if passed else "FAIL"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--seconds-per-cycle", type=float, default=3.0)
    parser.add_argument(
        "--acks-per-cycle",
        type=int,
        default=0,
        help="kill once the gateway acknowledged 1/2 to 1 times this many messages (or at the cycle's time)",
    )
    parser.add_argument("--synchronous", type=str.upper, choices=("NORMAL", "FULL"), default="NORMAL")
    parser.add_argument("--transport", choices=("http", "websocket"), default="http")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--loss", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--fuzz-json", type=Path, default=None)
    parser.add_argument("--bola-json", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    parser.add_argument("--quiet", action="store_true", help="only the combined report")
    args = parser.parse_args(argv)
    if min(args.cycles, args.conversations, args.senders, args.messages) < 1 or args.seconds_per_cycle <= 0:
        parser.error("sizes must be positive")
    if not 0 <= args.loss < 1:
        parser.error("--loss must be in [0, 1)")
    rows, fields, external_ok = external_rows(args.fuzz_json, args.bola_json)  # bad files fail before any run
    crash = asyncio.run(
        run_crash(
            Options(
                "crash",
                args.cycles,
                args.conversations,
                args.senders,
                args.seconds_per_cycle,
                args.synchronous,
                args.transport,
                seed=args.seed,
                acks_per_cycle=max(0, args.acks_per_cycle),
            )
        )
    )
    lost = asyncio.run(
        run_lost_acks(
            Options(
                "lost-acks",
                conversations=4,
                synchronous=args.synchronous,
                messages=args.messages,
                loss=args.loss,
                seed=args.seed,
            )
        )
    )
    passed = crash["passed"] and lost["passed"] and external_ok
    if not args.quiet:
        print(render(crash), render(lost), "", sep="\n")
    print(summary(crash, lost, rows, passed))
    if args.json is not None:
        write_json(args.json, {"crash": crash, "lost_acks": lost, **fields, "passed": passed})
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
