"""Reconnect without loss, idempotent sends under lost acknowledgements, liveness of half-open sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from captivate_chat_api import CaptivateChatAPI, ConnectionState, ReconnectPolicy, UserMessageEcho
from harness.faultproxy import FaultProxy
from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient

FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.3)


async def until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def proxy(gateway: GatewayProcess):  # type: ignore[no-untyped-def]
    async with FaultProxy("127.0.0.1", gateway.port) as running:
        yield running


async def test_events_sent_while_the_socket_was_cut_arrive_once_in_order(
    gateway: GatewayProcess, proxy: FaultProxy, api_key: str, transport: str
) -> None:
    api = CaptivateChatAPI(api_key, base_url=proxy.url, transport=transport, reconnect=FAST)  # type: ignore[arg-type]
    states: list[ConnectionState] = []
    api.on_state_change(states.append)
    async with api:
        conv = await api.create_conversation("cut-user", mode="user-first")
        seqs: list[int] = []
        conv.on_event(lambda e: seqs.append(e.seq))
        async with WireClient(gateway.http_url, gateway.ws_url, api_key) as other_tab:
            for round_ in range(3):
                proxy.black_hole = True  # the link goes silent, then is cut
                proxy.cut()
                proxy.black_hole = False
                for n in range(3):  # meanwhile another tab talks in the same conversation
                    await other_tab.say(conv.conversation_id, f"r{round_}-{n}")
                await until(
                    lambda: api.state is ConnectionState.CONNECTED and seqs and seqs[-1] >= conv.last_seq
                )
            await until(lambda: len(seqs) >= 18)
            await asyncio.sleep(0.3)
    assert seqs == list(range(1, len(seqs) + 1)), "every event exactly once, in order"
    assert len(seqs) == 18  # 9 user messages + 9 replies
    assert ConnectionState.RECONNECTING in states


async def test_gateway_restart_mid_conversation(tmp_path: Path, transport: str) -> None:
    key = new_key()
    gateway = GatewayProcess(tmp_path / "restart.db", [key]).start()
    port = gateway.port
    try:
        api = CaptivateChatAPI(key, base_url=gateway.http_url, transport=transport, reconnect=FAST)  # type: ignore[arg-type]
        async with api:
            conv = await api.create_conversation("restart-user", mode="user-first")
            texts: list[str] = []
            seqs: list[int] = []
            conv.on_message(lambda m, k: texts.append(m["text"]))
            conv.on_event(lambda e: seqs.append(e.seq))
            await conv.send_message("before")
            await until(lambda: texts == ["You said: before"])
            gateway.kill()
            gateway = GatewayProcess(tmp_path / "restart.db", [key], port=port).start()
            await until(lambda: api.state is ConnectionState.CONNECTED, timeout=20)
            await conv.send_message("after")
            await until(lambda: texts == ["You said: before", "You said: after"])
            assert seqs == [1, 2, 3, 4]
    finally:
        gateway.stop()


async def test_a_send_whose_acknowledgement_is_lost_is_stored_once(
    gateway: GatewayProcess, proxy: FaultProxy, api_key: str
) -> None:
    fast_retry = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, max_attempts=5)
    async with CaptivateChatAPI(api_key, base_url=proxy.url, retry=fast_retry) as api:
        conv = await api.create_conversation("lost-ack", mode="user-first")
        results = []
        for n in range(10):
            if n % 3 == 0:
                proxy.lose_responses(1)
            results.append(await conv.send_message(f"m{n}"))
        assert proxy.lost == 4
        assert sum(r.duplicate for r in results) == 4  # the retries were answered with the first result
        transcript = await conv.get_transcript()
    user_texts = [e.content["text"] for e in transcript if e.sender == "user"]
    assert user_texts == [f"m{n}" for n in range(10)]
    assert [r.seq for r in results] == sorted(r.seq for r in results if r.seq is not None)


async def test_a_half_open_socket_is_detected_by_ping_timeout(
    gateway: GatewayProcess, proxy: FaultProxy, api_key: str
) -> None:
    api = CaptivateChatAPI(api_key, base_url=proxy.url, ping_interval=0.3, ping_timeout=0.3, reconnect=FAST)
    states: list[ConnectionState] = []
    api.on_state_change(states.append)
    async with api:
        conv = await api.create_conversation("half-open", mode="user-first")
        proxy.black_hole = True  # no FIN, no RST: only a missing pong can tell
        silent = asyncio.get_running_loop().time()
        await until(lambda: ConnectionState.RECONNECTING in states, timeout=10)
        # found dead within a ping interval and a pong's wait (0.6 s), then dropped after a closing handshake
        # bounded like a pong (0.3 s), not the 2 s a healthy link's close may take
        assert asyncio.get_running_loop().time() - silent < 1.6
        proxy.cut()
        proxy.black_hole = False
        await until(lambda: api.state is ConnectionState.CONNECTED, timeout=10)
        stream = conv.events()
        await conv.send_message("still deaf?")
        event = await stream.next(timeout=5)
        assert isinstance(event, UserMessageEcho)
