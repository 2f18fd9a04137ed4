"""The crash harness and the lost-acknowledgement run at CI size (tools/crash_harness.py).

The larger runs are documented in the harness's docstring; e.g.
``.venv/bin/python tools/crash_harness.py --cycles 10 --conversations 20 --senders 4 --seconds-per-cycle 3``.

At CI size each SIGKILL comes once the running gateway acknowledged a random 10 to 20 messages with
requests in flight (``acks_per_cycle``), not after seconds of load: every kill still lands on concurrent
senders mid-request (``retried`` > 0, an acknowledgement by every restarted gateway), and the load the
count then checks is ~60 messages instead of ~600 (CPU-s 18 -> ~8 for the file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))

import crash_harness as harness
import reliability_report


def must_be_zero(result: dict[str, object]) -> tuple[object, ...]:
    return tuple(
        result[name] for name in ("lost", "duplicated", "reordered", "mismatched", "unexpected", "errors")
    )


def entry(text: str, seq: int, message_id: str | None = None) -> dict[str, object]:
    return {
        "from": "user",
        "seq": seq,
        "message_id": message_id or f"m{seq}",
        "content": {"type": "text", "text": text},
    }


def test_the_count_sees_loss_duplication_reordering_and_a_wrong_ack() -> None:
    ledger = harness.Ledger(conversations={0: "conv-a"})
    texts = [harness.message_text(0, 0, n) for n in range(1, 7)]
    ledger.sent = texts
    for n, text in enumerate(texts[:5], start=1):
        ledger.acks[text] = harness.Ack(f"m{n}", n, 0.01, 1, 0, False)
    transcript = [
        entry(texts[0], 1),
        {"from": "bot", "seq": 2, "message_id": "b", "content": {"type": "text", "text": "You said: …"}},
        entry(texts[2], 3),  # texts[1] (acknowledged as seq 2) is missing
        entry(texts[4], 4, "m5"),  # stored before texts[3]: out of send order (and acknowledged as m5/5)
        entry(texts[3], 5, "other"),  # acknowledged as m4/4
        entry(texts[5], 6),  # never acknowledged, stored: allowed
        entry(texts[2], 7, "m7"),  # stored twice
    ]
    counts = harness.count(ledger, {"conv-a": transcript})
    assert (counts.lost, counts.duplicated, counts.reordered, counts.mismatched) == (1, 1, 1, 2)
    assert (counts.unacked, counts.unacked_stored, counts.unexpected) == (1, 1, 0)
    assert not counts.passed
    assert any("not stored" in line for line in counts.examples)

    shuffled = harness.count(ledger, {"conv-a": [transcript[1], transcript[0], entry("hello", 8)]})
    assert shuffled.unexpected == 2  # a seq going backwards, and an entry nobody sent


async def test_sigkill_under_http_load_loses_duplicates_and_reorders_nothing() -> None:
    options = harness.Options(
        cycles=3, conversations=4, senders=2, seconds_per_cycle=2.0, seed=11, acks_per_cycle=20
    )
    result = await harness.run_crash(options)
    assert must_be_zero(result) == (0, 0, 0, 0, 0, 0), harness.render(result)
    assert result["kills"] == 3
    assert result["acked_after_restart"] > 0, "nothing was acknowledged by a restarted gateway"
    assert result["retried"] > 0, "no kill interrupted a send: the run proved nothing"
    assert result["in_flight_at_kills"] > 0, "no kill came while a request was in flight"
    assert result["stored"] >= result["acked"]
    assert result["passed"]


async def test_lost_acknowledgements_are_retried_into_exactly_one_copy() -> None:
    result = await harness.run_lost_acks(
        harness.Options(mode="lost-acks", conversations=4, messages=50, loss=0.1, seed=3)
    )
    assert must_be_zero(result) == (0, 0, 0, 0, 0, 0), harness.render(result)
    assert result["acks_lost"] > 0
    assert result["acked"] == result["sent"] == result["stored"] == 50
    assert result["duplicate_acks"] > 0, "no retry was answered with the first acknowledgement"


def test_bad_sizes_are_refused_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # the script's own main() (``python tools/crash_harness.py`` is ``sys.exit(main())``), in this process:
    # a second interpreter importing the SDK and httpx only to be refused cost ~1 CPU-s
    with pytest.raises(SystemExit) as refused:
        harness.main(["--loss", "1.5"])
    assert refused.value.code == 2 and "--loss must be in [0, 1)" in capsys.readouterr().err


def test_the_combined_report_over_websocket_with_full_sync_and_external_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fuzz, bola = tmp_path / "fuzz.json", tmp_path / "bola.json"
    fuzz.write_text(json.dumps({"fuzz_cases": 5000, "failures": 0, "cases_by_test": {}}))
    bola.write_text(json.dumps({"attempts": 120, "successes": 0}))
    out = tmp_path / "report.json"
    argv = [
        "--cycles",
        "2",
        "--seconds-per-cycle",
        "1.5",
        "--acks-per-cycle",
        "20",
        "--conversations",
        "4",
        "--senders",
        "2",
        "--transport",
        "websocket",
        "--synchronous",
        "full",
        "--messages",
        "40",
        "--seed",
        "5",
        "--fuzz-json",
        str(fuzz),
        "--bola-json",
        str(bola),
        "--json",
        str(out),
    ]
    # the script's main() (``python tools/reliability_report.py`` is ``sys.exit(main())``) in this process,
    # its gateways forked from the suite's fork server: no second interpreter and fork server (~2.5 CPU-s)
    code = reliability_report.main(argv)
    done = capsys.readouterr()
    assert code == 0, done.out + done.err
    words = " ".join(done.out.split())
    for row in (
        "transport websocket, SQLite synchronous FULL",
        "lost / duplicated / reordered 0 / 0 / 0",
        "lost-ack run: stored exactly once 40 of 40",
        "fuzz cases tried 5000",
        "cross-tenant SUCCESSES 0",
        "RESULT: PASS",
    ):
        assert row in words, done.out
    report = json.loads(out.read_text())
    crash, lost = report["crash"], report["lost_acks"]
    assert report["passed"] and report["cross_tenant"] == {"attempts": 120, "successes": 0}
    assert crash["kills"] == 2 and crash["acked_after_restart"] > 0 and crash["retried"] > 0
    assert must_be_zero(crash) == must_be_zero(lost) == (0, 0, 0, 0, 0, 0)
    assert lost["acked"] == lost["stored"] == 40


def test_a_cross_tenant_success_fails_the_report_and_a_bad_file_is_named(tmp_path: Path) -> None:
    bola = tmp_path / "bola.json"
    bola.write_text(json.dumps({"attempts": 10, "successes": 1}))
    rows, fields, passed = reliability_report.external_rows(None, bola)
    assert not passed and ("cross-tenant SUCCESSES", 1) in rows and "fuzz" not in fields
    broken = tmp_path / "fuzz.json"
    broken.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read .*fuzz.json"):
        reliability_report.external_rows(broken, None)
