"""Raw WebSocket frames against a live gateway: binary, arbitrary text, fragmented, empty, at the size limit.

A frame the gateway cannot read gets a ``general_error`` and the socket stays open; only a message over
the size limit (1009) or a text frame that is not UTF-8 (1007, refused by the WebSocket layer) closes it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Iterator

import pytest
from fuzzkit import TALLY, Harness, Target, check_memory, fuzz_settings
from hostile import LIMIT, UNICODE, Body, envelopes
from hypothesis import example, given
from hypothesis import strategies as st


@pytest.fixture
def harness(fuzz_target: Target, request: pytest.FixtureRequest) -> Iterator[tuple[asyncio.Runner, Harness]]:
    """A harness on a loop of its own: hypothesis calls plain functions, which run each case on it."""
    with asyncio.Runner() as runner:
        opened = runner.run(Harness(fuzz_target.gateway, fuzz_target.key, request.node.name).open())
        try:
            yield runner, opened
            runner.run(opened.control_check())
        finally:
            runner.run(opened.close())


def split(data: str | bytes, cuts: list[int]) -> list[str] | list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]  # type: ignore[return-value]


def padded(size: int) -> tuple[str, str]:
    """A valid envelope of exactly ``size`` UTF-8 bytes, and its ``request_id``."""
    request_id = uuid.uuid4().hex
    event = {"event_type": "get_user_conversations", "event_payload": {"userId": "probe", "pad": ""}}
    text = json.dumps({"action": "sendMessage", "event": event, "request_id": request_id})
    return text.replace('"pad": ""', '"pad": "' + "x" * (size - len(text.encode())) + '"'), request_id


def test_binary_frames(harness: tuple[asyncio.Runner, Harness]) -> None:
    runner, fuzzer = harness

    @fuzz_settings(0.5)
    @given(data=st.binary(max_size=4096).map(Body) | envelopes(fuzzer.conversation_ids))
    @example(data=Body(b""))
    @example(
        data=Body(b'{"event": {"event_type": "get_user_conversations", "event_payload": {"userId": "u"}}}')
    )
    def case(data: Body) -> None:
        runner.run(fuzzer.send(fuzzer.fill(data.data)))

    case()


def test_arbitrary_text_frames(harness: tuple[asyncio.Runner, Harness]) -> None:
    runner, fuzzer = harness

    @fuzz_settings(0.5)
    @given(text=st.text(UNICODE, max_size=2000))
    @example(text="")
    @example(text="\x00")
    def case(text: str) -> None:
        runner.run(fuzzer.send(text))

    case()


def test_fragmented_messages(harness: tuple[asyncio.Runner, Harness]) -> None:
    runner, fuzzer = harness

    @fuzz_settings(0.5)
    @given(
        body=envelopes(fuzzer.conversation_ids),
        cuts=st.lists(st.integers(0, 10**6), max_size=8),
        binary=st.booleans(),
    )
    @example(body=Body(b""), cuts=[0, 0, 0], binary=False)
    @example(body=Body(b""), cuts=[0, 0], binary=True)
    def case(body: Body, cuts: list[int], binary: bool) -> None:
        data = fuzzer.fill(body.data)
        try:
            frames = split(data if binary else data.decode("utf-8"), cuts)
        except UnicodeDecodeError:
            frames = split(data, cuts)
        runner.run(fuzzer.send(frames))

    case()


async def test_a_fragmented_envelope_is_served_like_a_whole_one(fuzz_target: Target) -> None:
    fuzzer = await Harness(fuzz_target.gateway, fuzz_target.key, "fragments_served").open(conversations=0)
    try:
        for parts in (1, 2, 7, 64):
            text, request_id = padded(1000)
            reply = fuzzer.expect_reply(request_id)
            await fuzzer.send(split(text, [len(text) * i // parts for i in range(1, parts)]))
            assert (await asyncio.wait_for(reply, 20))["event"]["event_type"] == "user_conversations"
    finally:
        await fuzzer.close()


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("fragmented", [False, True], ids=["whole", "fragmented"])
async def test_size_limit_exactly_and_one_byte_over(
    fuzz_target: Target, binary: bool, fragmented: bool
) -> None:
    """A message of exactly the limit is served; one byte more closes the socket with 1009.

    Fragmented messages are sent without permessage-deflate: with it, the websockets client ends a
    fragmented message with an empty final frame that compresses to 1 byte, and the server's websockets
    checks that compressed length against the budget left (0), closing an exactly-at-limit message 1009.
    """
    fuzzer = Harness(fuzz_target.gateway, fuzz_target.key, "size_limit", deflate=not fragmented)
    await fuzzer.open(conversations=0)
    try:
        for size in (LIMIT, LIMIT + 1):
            text, request_id = padded(size)
            data: str | bytes = text.encode() if binary else text
            reply = fuzzer.expect_reply(request_id)
            await fuzzer.send(
                split(data, [size // 3, size // 2]) if fragmented else data
            )  # 1009 expected over
            if size == LIMIT:
                assert (await asyncio.wait_for(reply, 20))["event"]["event_type"] == "user_conversations"
            else:
                with pytest.raises(AssertionError, match="closed"):
                    await reply
        assert fuzzer.ws.close_code is None  # the socket reopened after the 1009 serves again
        await fuzzer.probe()
    finally:
        await fuzzer.close()


def test_invalid_utf8_text_frames_are_closed_1007(harness: tuple[asyncio.Runner, Harness]) -> None:
    runner, fuzzer = harness

    async def send(data: bytes) -> None:
        await fuzzer.ws.send(data, text=True)
        await fuzzer.expect_close(1007)
        TALLY[fuzzer.name] += 1
        fuzzer.healthy()

    @fuzz_settings(0.1)
    @given(data=st.binary(min_size=1, max_size=64).filter(lambda b: not is_utf8(b)))
    @example(data=b"\xff")
    @example(data=b"\xed\xa0\x80")
    @example(data=b'{"event": "\xc0\xaf"}')
    def case(data: bytes) -> None:
        runner.run(send(data))

    case()


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_gateway_memory_stays_flat(fuzz_target: Target) -> None:
    check_memory(fuzz_target, "frames")
