"""Hostile client envelopes against a live gateway, as HTTP bodies and as WebSocket text frames.

After every case: the process is alive, nothing answered 5xx, an error is a 4xx JSON
``{error_code, error_desc}`` (over WebSocket a ``general_error``, the socket staying open), and every
few cases a conversation on another socket still gets its replies. At the end the gateway's RSS has
not grown past a generous bound. Sizes and the report: see fuzzkit.py.
"""

from __future__ import annotations

import asyncio
import json

from fuzzkit import Harness, Target, check_memory, fuzz_settings
from hostile import Body, envelopes
from hypothesis import example, given

NAN_METADATA = b'{"event": {"event_type": "conversation_start", "event_payload": {"userId": "fuzz-user", "metadata": {"a": NaN}}}}'
HUGE_FLOAT = b'{"event": {"event_type": "conversation_start", "event_payload": {"userId": "fuzz-user", "metadata": {"a": 1e999}}}}'
SURROGATE_ESCAPE = b'{"event": {"event_type": "conversation_start", "event_payload": {"userId": "\\udc00"}}}'
SURROGATE_BYTES = (
    b'{"event": {"event_type": "conversation_start", "event_payload": {"userId": "\xed\xa0\x80"}}}'
)


def fuzz(target: Target, name: str, transport: str) -> None:
    with asyncio.Runner() as runner:
        harness = runner.run(Harness(target.gateway, target.key, name).open())
        try:

            @fuzz_settings()
            @given(body=envelopes(harness.conversation_ids))
            @example(body=Body(NAN_METADATA))
            @example(body=Body(HUGE_FLOAT))
            @example(body=Body(SURROGATE_ESCAPE))
            @example(body=Body(SURROGATE_BYTES))
            def case(body: Body) -> None:
                runner.run(
                    harness.post(body.data) if transport == "http" else harness.send_envelope(body.data)
                )

            case()
            runner.run(harness.control_check())
        finally:
            runner.run(harness.close())


def test_http_envelopes(fuzz_target: Target) -> None:
    fuzz(fuzz_target, "http_envelopes", "http")


def test_websocket_envelopes(fuzz_target: Target) -> None:
    fuzz(fuzz_target, "ws_envelopes", "ws")


async def test_non_json_numbers_and_lone_surrogates_are_refused_not_stored(fuzz_target: Target) -> None:
    """Regression: NaN / 1e999 / a lone surrogate were accepted, then every answer carrying them was a 500."""
    harness = await Harness(fuzz_target.gateway, fuzz_target.key, "regressions").open(conversations=1)
    try:
        for body in (NAN_METADATA, HUGE_FLOAT, SURROGATE_ESCAPE, SURROGATE_BYTES):
            assert (await harness.post(body)).status_code == 400, body
            await harness.send_envelope(body)
        cid = harness.conversation_ids[0]
        metadata = {
            "event": {"event_type": "metadata", "event_payload": {"conversation_id": cid, "metadata": {}}}
        }
        for value in ("NaN", "-Infinity", "1e400", '"\\ud800"'):
            body = json.dumps(metadata).replace("{}}}}", f'{{"x": {value}}}}}}}').encode()
            assert (await harness.post(body)).status_code == 400, body
        listing = (
            b'{"event": {"event_type": "get_user_conversations", "event_payload": {"userId": "fuzz-user"}}}'
        )
        assert (await harness.post(listing)).status_code == 200
        subscribe = {"conversation_id": cid, "after_seq": 2**70}
        await harness.send(json.dumps({"event": {"event_type": "subscribe", "event_payload": subscribe}}))
    finally:
        await harness.close()


def test_gateway_memory_stays_flat(fuzz_target: Target) -> None:
    check_memory(fuzz_target, "envelopes")
