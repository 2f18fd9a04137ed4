"""Rate limits: over the limit is refused with 429 (and Retry-After), the socket stays usable, nothing is stored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from captivate_chat_api.server.limits import TokenBucket
from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0, stamp=100.0)
    assert bucket.take(100.0) == 0.0 and bucket.take(100.0) == 0.0
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.5) == 0.0


@pytest.fixture(scope="module")
def limited_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, list[str]]]:
    """A gateway with low limits and a handful of keys: each test takes fresh ones (full buckets, no waits)."""
    keys = [new_key() for _ in range(4)]
    env = {
        "CAPTIVATE_RATE_PER_SOCKET": "2",
        "CAPTIVATE_BURST_PER_SOCKET": "3",
        # a slow refill: the burst of 8 is what a test sees even when a loaded machine spreads 12 requests over
        # seconds (at 5/s the bucket refilled mid-test and more than 8 got through)
        "CAPTIVATE_RATE_PER_KEY": "0.5",
        "CAPTIVATE_BURST_PER_KEY": "8",
    }
    gateway = GatewayProcess(tmp_path_factory.mktemp("limits") / "gw.db", keys, env=env).start()
    yield gateway, keys
    gateway.stop()


@pytest.fixture
def limited(limited_gateway: tuple[GatewayProcess, list[str]]) -> tuple[GatewayProcess, Callable[[], str]]:
    """The gateway, and a function giving a key no test has used yet."""
    gateway, keys = limited_gateway
    return gateway, keys.pop


async def test_websocket_events_over_the_socket_rate_get_429(
    limited: tuple[GatewayProcess, Callable[[], str]],
) -> None:
    gateway, fresh_key = limited
    async with WireClient(gateway.http_url, gateway.ws_url, fresh_key()) as client:
        for n in range(6):
            await client.send_ws("get_user_conversations", {"userId": f"rl-{n}"})
        answers = [(await client.recv())["event"] for _ in range(6)]
        refused = [a for a in answers if a["event_type"] == "general_error"]
        assert [a["event_type"] for a in answers].count("user_conversations") == 3  # the burst
        assert len(refused) == 3 and all(r["event_payload"]["error_code"] == 429 for r in refused)
        assert all(r["event_payload"]["retry_after"] > 0 for r in refused)
        await asyncio.sleep(max(r["event_payload"]["retry_after"] for r in refused))  # as the gateway said
        await client.send_ws("get_user_conversations", {"userId": "rl-later"})
        assert (await client.recv())["event"]["event_type"] == "user_conversations"  # the socket carries on


async def test_http_over_the_key_rate_gets_429_with_retry_after(
    limited: tuple[GatewayProcess, Callable[[], str]],
) -> None:
    gateway, fresh_key = limited
    async with WireClient(gateway.http_url, gateway.ws_url, fresh_key()) as client:
        cid = await client.start("rl-http")  # one event
        statuses = []
        for n in range(12):
            response = await client.post(
                "user_message", {"conversation_id": cid, "content": f"m{n}"}, socket=False
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert response.json()["error_code"] == 429
        assert 429 in statuses and statuses.count(200) <= 8
        transcript = (await client.http.get("/api/transcript", params={"conversation_id": cid})).json()[
            "transcript"
        ]
        stored = [e for e in transcript if e["from"] == "user"]
        assert len(stored) == statuses.count(200)  # refused messages were not stored


async def test_the_sdk_waits_out_a_rate_limit_on_both_transports(tmp_path: Path) -> None:
    from captivate_chat_api import CaptivateChatAPI

    # its own gateway: the socket's limit only (5/s, a burst of 4), not the module's slow key refill, which
    # every refused attempt drew on too (6 s of waits, most of them the key's). Seven events a transport (the
    # start and six messages): the WebSocket one waits out three refusals of 0.2 s, and one wait of the HTTP
    # transport's whole-second Retry-After refills the burst for the last three (at 3/s, a burst of 3, it
    # took two, and the WebSocket four of 0.33 s)
    keys = [new_key(), new_key()]
    rate, burst = 5, 4
    env = {"CAPTIVATE_RATE_PER_SOCKET": str(rate), "CAPTIVATE_BURST_PER_SOCKET": str(burst)}
    gateway = GatewayProcess(tmp_path / "gw.db", keys, env=env).start()
    try:
        for transport, key in zip(("websocket", "http"), keys, strict=True):
            async with CaptivateChatAPI(key, base_url=gateway.http_url, transport=transport) as api:  # type: ignore[arg-type]
                refused_before = gateway.logs().count("/sockets/message 429")
                began = time.monotonic()
                conv = await api.create_conversation(f"rl-sdk-{transport}", mode="user-first")
                sent = [
                    await conv.send_message(f"m{n}") for n in range(6)
                ]  # over the burst: waits, not fails
                took = time.monotonic() - began
                assert [s.seq for s in sent] == sorted(s.seq for s in sent) and all(
                    s.message_id for s in sent
                )
                # it was held back: the bucket lets seven events through no sooner than this
                assert took > 0.8 * (7 - burst) / rate, (transport, took)
                if transport == "http":  # ... because the gateway refused some (a 429 the SDK waited out)
                    deadline = time.monotonic() + 5
                    while gateway.logs().count("/sockets/message 429") == refused_before:
                        assert time.monotonic() < deadline, gateway.logs()[-2000:]
                        await asyncio.sleep(0.02)
    finally:
        gateway.stop()
