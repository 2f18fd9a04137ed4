"""The gateway's log lines: written once per event-loop iteration (``LineBuffer``), every line kept, in
order; the JSON format and the access line the same as before they were made cheaper."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from captivate_chat_api.server.logs import (
    ACCESS_FORMAT,
    CleanRecords,
    DropDenialNoise,
    JsonFormatter,
    LineBuffer,
    RedactSecrets,
    TextFormatter,
    _UtcTimes,
    log_access,
)


class Writes(io.StringIO):
    """A stream that counts its ``write`` calls (each one a system call on stderr)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, LineBuffer, Writes]]:
    stream = Writes()
    handler = LineBuffer(stream, capacity=50)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test_log_lines.{random.random()}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, handler, stream
    logger.removeHandler(handler)
    handler.close()


async def test_an_iterations_lines_are_written_together_at_its_end(
    logger: tuple[logging.Logger, LineBuffer, Writes],
) -> None:
    log, _, stream = logger
    for i in range(10):
        log.info("line %d", i)
    assert stream.getvalue() == ""  # kept for now...
    await asyncio.sleep(0)  # ...and written by the next iteration, in one write
    assert stream.getvalue() == "".join(f"INFO line {i}\n" for i in range(10))
    assert stream.writes == 1
    log.info("later")  # a new iteration's line is written too, without anything else logged
    await asyncio.sleep(0)
    assert stream.getvalue().endswith("INFO line 9\nINFO later\n") and stream.writes == 2


async def test_an_idle_loop_still_writes_the_last_line(
    logger: tuple[logging.Logger, LineBuffer, Writes],
) -> None:
    log, _, stream = logger
    log.info("the last one")
    await asyncio.sleep(0.05)  # nothing else happens on the loop
    assert stream.getvalue() == "INFO the last one\n"


async def test_errors_full_buffers_and_other_threads_write_at_once_in_order(
    logger: tuple[logging.Logger, LineBuffer, Writes],
) -> None:
    log, _, stream = logger
    log.info("before")
    log.error("failed")
    assert stream.getvalue() == "INFO before\nERROR failed\n"  # with every line before it
    for i in range(50):  # capacity 50
        log.info("n%d", i)
    assert stream.getvalue().endswith("INFO n49\n")
    log.info("kept")
    thread = threading.Thread(target=log.info, args=("from a thread",))
    thread.start()
    thread.join()
    assert stream.getvalue().endswith("INFO kept\nINFO from a thread\n")  # the loop's line first
    await asyncio.sleep(0)
    assert stream.getvalue().count("INFO kept\n") == 1  # written once


def test_outside_an_event_loop_lines_are_written_at_once(
    logger: tuple[logging.Logger, LineBuffer, Writes],
) -> None:
    log, _, stream = logger
    log.info("start-up")
    assert stream.getvalue() == "INFO start-up\n"


def test_a_loop_that_ended_with_lines_scheduled_loses_none(
    logger: tuple[logging.Logger, LineBuffer, Writes],
) -> None:
    """A loop closed before the write it was given ran (the end of ``asyncio.run``): the lines are
    written by ``flush``/``close`` (``logging.shutdown`` at exit), or with the next line of another loop."""
    log, handler, stream = logger

    def last_words(loop: asyncio.AbstractEventLoop) -> None:
        log.info("one")
        loop.stop()  # the loop ends with this iteration: the write scheduled for the next never runs

    loop = asyncio.new_event_loop()
    loop.call_soon(last_words, loop)
    loop.run_forever()
    loop.close()
    assert stream.getvalue() == ""

    async def next_loop() -> None:
        log.info("two")
        await asyncio.sleep(0)

    asyncio.run(next_loop())
    assert stream.getvalue() == "INFO one\nINFO two\n"
    loop = asyncio.new_event_loop()
    loop.call_soon(last_words, loop)
    loop.run_forever()
    loop.close()
    assert stream.getvalue() == "INFO one\nINFO two\n"
    handler.close()
    assert stream.getvalue() == "INFO one\nINFO two\nINFO one\n"


def test_times_are_those_of_datetime() -> None:
    times = _UtcTimes()
    rng = random.Random(14)
    base = 1_796_000_000.0
    samples = [base + rng.random() * 100 for _ in range(20_000)]
    samples += [base + k / 1000 + d for k in range(2000) for d in (0.0, 0.0005, 0.0004999, 0.0009999)]
    samples += [base + 0.9999996, base + 0.9999995, base - 0.0000004, 0.0, 1e-7, base + 59.9995]
    for created in samples:
        assert times(created) == datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"), (
            created
        )


def _old_json(record: logging.LogRecord) -> str:
    """The JSON line as ``JsonFormatter`` wrote it before (``json.dumps`` per record)."""
    formatter = JsonFormatter()
    line = json.loads(formatter.format(record))
    line["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    return json.dumps(line, ensure_ascii=False, default=str)


def test_json_lines_keep_their_fields_order_and_redaction() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord(
        "captivate_chat_api.server", logging.INFO, __file__, 1, "stored %s", ("é",), None
    )
    record.conversation_id = "c1"
    record.seq = 3
    record.url = "/dev?apiKey=cck_secret_value_123"
    line = formatter.format(record)
    assert line == _old_json(record)
    entry = json.loads(line)
    assert list(entry) == ["time", "level", "logger", "message", "conversation_id", "seq", "url"]
    assert entry["message"] == "stored é" and "é" in line  # not escaped (ensure_ascii=False)
    assert "cck_secret" not in line
    plain = logging.LogRecord("x", logging.WARNING, __file__, 1, "plain", None, None)
    assert list(json.loads(formatter.format(plain))) == ["time", "level", "logger", "message"]


def test_the_access_line_is_the_one_logger_info_gave(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="captivate_chat_api.access")
    logging.getLogger("captivate_chat_api.access").info(ACCESS_FORMAT, "POST", "/a", 200, 1.25)
    log_access("POST", "/a", 401, 0.0)
    first, second = caplog.records
    assert first.getMessage() == "POST /a 200 1.2ms"
    assert second.name == first.name and second.levelno == logging.INFO and second.msg == first.msg
    assert second.getMessage().startswith("POST /a 401 ") and second.getMessage().endswith("ms")
    logging.getLogger("captivate_chat_api.access").setLevel(logging.WARNING)
    try:
        log_access("POST", "/a", 200, 0.0)  # below the level: nothing
    finally:
        logging.getLogger("captivate_chat_api.access").setLevel(logging.NOTSET)
    assert len(caplog.records) == 2


def test_clean_records_is_the_two_filters_in_one() -> None:
    def through(filters: list[logging.Filter], msg: str, args: tuple[object, ...] | None) -> str | None:
        record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, msg, args, None)
        if not all(f.filter(record) for f in filters):
            return None
        return TextFormatter().format(record).split(": ", 1)[1]

    cases: list[tuple[str, tuple[object, ...] | None]] = [
        ("ASGI callable returned without completing handshake.", None),
        ("%s", ("ASGI callable returned without completing handshake.",)),
        ('%s - "WebSocket %s" %d', ("127.0.0.1:5", "/dev?apiKey=cck_abcdefgh12345678", 403)),
        ("x-api-key: %s", ("abc123",)),
        ("POST %s %d", ("/api/custom-channel/sockets/message", 200)),
        ("100%% done", ()),
    ]
    for msg, args in cases:
        assert through([CleanRecords()], msg, args) == through(
            [DropDenialNoise(), RedactSecrets()], msg, args
        )
    assert through([CleanRecords()], *cases[2]) == '127.0.0.1:5 - "WebSocket /dev?[REDACTED]" 403'


def test_text_times_are_those_of_the_logging_formatter() -> None:
    ours, theirs = TextFormatter(), logging.Formatter("%(asctime)s")
    rng = random.Random(7)
    for created in [1_796_000_000.0 + rng.random() * 7200 for _ in range(5000)] + [1_796_000_000.9999]:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert ours.formatTime(record) == theirs.formatTime(record)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    assert ours.format(record) == theirs.formatTime(record) + " INFO    x: hello you"
