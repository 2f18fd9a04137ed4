"""Two gateway processes on the real PostgreSQL and Redis act as one: no sticky sessions, nothing lost.

A client's WebSocket is on process A while everything that writes to its conversation (its own HTTP
posts, the agent's push, a human agent) goes to process B; a process is killed; Redis is stopped. In
every case the client sees each event of its conversation exactly once, in ``seq`` order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from captivate_chat_api import CaptivateChatAPI, ConnectionState, ReconnectPolicy
from harness.balancer import Front, websocket_to
from harness.cluster import RedisServer, start_gateways
from harness.gateway import GatewayProcess, new_key
from harness.tokens import add_token
from harness.wire import WireClient, tls

FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.3)


class Pair:
    def __init__(self, a: GatewayProcess, b: GatewayProcess, key: str, push: str, human: str) -> None:
        self.a, self.b, self.key, self.push, self.human = a, b, key, push, human

    def user(self) -> WireClient:
        """A raw client whose WebSocket is on A and whose HTTP posts go to B."""
        return WireClient(self.b.http_url, self.a.ws_url, self.key)


def start_pair(database: str, broker: str) -> Pair:
    key = new_key()
    a, b = start_gateways(database, [key], broker, 2)
    try:
        push = asyncio.run(add_token(database, key, "push", "agent"))
        human = asyncio.run(add_token(database, key, "human", "Alice"))
    except BaseException:
        stop(a, b)
        raise
    return Pair(a, b, key, push, human)


def stop(*gateways: GatewayProcess) -> None:
    for gateway in gateways:
        if gateway.proc is not None:
            gateway.stop()


@pytest.fixture(scope="module")
def pair(postgres_schema: str, redis_server: RedisServer) -> Iterator[Pair]:
    started = start_pair(postgres_schema, redis_server.url)
    yield started
    stop(started.a, started.b)


async def frames_until(
    client: WireClient, conversation_id: str, last_seq: int, timeout: float = 20, settle: float = 0.5
) -> list[dict[str, Any]]:
    """Frames of the conversation that carry a ``seq``, until ``last_seq`` arrived; then ``settle`` seconds
    more, so a duplicate or a stray frame would be seen too (0 where the next call on the same socket reads
    on: it gets what would have come meanwhile, and its own checks see it)."""
    events: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while not events or events[-1]["seq"] < last_seq:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"seq {last_seq} never arrived; got {[e['seq'] for e in events]}"
        try:
            frame = await client.recv(remaining)
        except TimeoutError:
            continue
        payload = frame["event"]["event_payload"]
        if payload.get("conversation_id") == conversation_id and "seq" in payload:
            events.append({**payload, "event": frame["event"]["event_type"]})
    while True:
        try:
            frame = await client.recv(settle)
        except TimeoutError:
            return events
        payload = frame["event"]["event_payload"]
        if "seq" in payload:
            events.append({**payload, "event": frame["event"]["event_type"]})


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in events]


async def test_every_event_reaches_the_client_on_the_other_process_once_and_in_order(pair: Pair) -> None:
    async with (
        pair.user() as user,
        httpx.AsyncClient(verify=tls(), base_url=pair.b.http_url, timeout=10) as b,
    ):
        cid = await user.start("cross-node")  # posted to B; conversation_start_success arrives on A
        for n in range(3):
            await user.say(cid, f"hello {n}", client_msg_id=f"m{n}")
        live = await frames_until(
            user, cid, 6, settle=0
        )  # the replies, before a human takes over (they would be dropped)
        pushed = await b.post(
            "/api/channel/v2/sendMessage",
            params={"token": pair.push},
            json={"session_id": cid, "response": [{"type": "text", "text": "pushed later"}]},
        )
        assert pushed.status_code == 200, pushed.text
        agent = {"x-agent-token": pair.human}
        taken = await b.post(f"/api/agent/conversations/{cid}/take", headers=agent, json={})
        assert taken.status_code == 200 and taken.json()["state"] == "human", taken.text
        sent = await b.post(
            f"/api/agent/conversations/{cid}/messages", headers=agent, json={"text": "Alice here"}
        )
        assert sent.status_code == 200, sent.text
        await user.say(cid, "thanks Alice", client_msg_id="m3")
        ended = await b.post(f"/api/agent/conversations/{cid}/end", headers=agent)
        assert ended.status_code == 200 and ended.json()["state"] == "ai", ended.text
        last_seq = ended.json()["last_seq"]

        live += await frames_until(user, cid, last_seq)

    assert seqs(live) == list(range(1, last_seq + 1)), "each event once, in seq order"
    texts = [
        (e["event"], (e.get("content") or {}).get("text"))
        for e in live
        if e["event"] != "conversation_update"
    ]
    said = [text for kind, text in texts[:6] if kind == "user_message"]
    replies = [text for kind, text in texts[:6] if kind == "bot_message"]
    assert said == ["hello 0", "hello 1", "hello 2"] and replies == [f"You said: {text}" for text in said]
    assert all(
        texts.index(("user_message", t)) < texts.index(("bot_message", f"You said: {t}")) for t in said
    )
    assert texts[6] == ("bot_message", "pushed later")
    assert ("livechat_message", "Alice here") in texts and ("user_message", "thanks Alice") in texts
    assert [e["type"] for e in live if e["event"] == "conversation_update"] == [
        "livechat_started",
        "livechat_ended",
    ]

    # What the socket on A saw live is exactly what a socket on B replays from the store.
    async with WireClient(pair.b.http_url, pair.b.ws_url, pair.key) as replay:
        await replay.ok("subscribe", {"conversation_id": cid, "after_seq": 0})
        replayed = await frames_until(replay, cid, last_seq)
    assert [(e["event"], e["seq"], e.get("message_id")) for e in replayed] == [
        (e["event"], e["seq"], e.get("message_id")) for e in live
    ]


async def test_writes_through_both_processes_arrive_in_seq_order(pair: Pair) -> None:
    """No sticky sessions: the client's posts alternate between A and B (each runs the agent turn for what
    it received), without waiting for replies; the socket on A still sees every seq once, in order."""
    to_a = WireClient(pair.a.http_url, pair.a.ws_url, pair.key)
    async with pair.user() as user:
        cid = await user.start("both-ways")
        to_a.socket_id = user.socket_id
        for n in range(20):
            await (to_a if n % 2 else user).say(cid, f"n{n}", client_msg_id=f"n{n}")
        live = await frames_until(user, cid, 40)
    await to_a.http.aclose()
    assert seqs(live) == list(range(1, 41))
    said = [e["content"]["text"] for e in live if e["event"] == "user_message"]
    assert said == [f"n{n}" for n in range(20)]


async def test_a_killed_process_its_clients_reconnect_to_the_other_and_resume(pair: Pair) -> None:
    # the module's pair (a pair of its own cost two gateway starts and two tokens): A is started again on
    # its port afterwards, for the tests after this one
    try:
        async with Front(
            [("127.0.0.1", pair.a.port), ("127.0.0.1", pair.b.port)], websocket_to(0, 2)
        ) as front:
            api = CaptivateChatAPI(pair.key, base_url=front.url, reconnect=FAST)
            async with api, httpx.AsyncClient(verify=tls(), base_url=pair.b.http_url, timeout=10) as b:
                conv = await api.create_conversation("failover", mode="user-first")
                seen: list[int] = []
                texts: list[str] = []
                conv.on_event(lambda e: seen.append(e.seq))
                conv.on_message(lambda m, kind: texts.append(m["text"]))
                await conv.send_message("before")
                await until(lambda: texts == ["You said: before"])
                assert front.routed[0] == 0, "the WebSocket went to A"

                front.prefer = lambda first: [
                    1
                ]  # while A is down, only B answers (as a balancer's health check would)
                pair.a.kill()
                pushed = await b.post(
                    "/api/channel/v2/sendMessage",
                    params={"token": pair.push},
                    json={
                        "session_id": conv.conversation_id,
                        "response": [{"type": "text", "text": "while you were away"}],
                    },
                )
                assert pushed.status_code == 200, pushed.text
                await until(lambda: api.state is ConnectionState.CONNECTED and conv.last_seq >= 3)
                await conv.send_message("after")
                await until(lambda: "You said: after" in texts)
                await asyncio.sleep(0.5)  # a duplicate would arrive now
                transcript = await conv.get_transcript()
    finally:
        if pair.a.proc is not None and pair.a.proc.poll() is not None:
            await asyncio.to_thread(pair.a.start)  # the same port, database and broker
    assert texts == ["You said: before", "while you were away", "You said: after"]
    assert seen == list(range(1, 6)), "every event once, in order, across the failover"
    assert [e.content["text"] for e in transcript] == [
        "before",
        "You said: before",
        "while you were away",
        "after",
        "You said: after",
    ]


async def test_a_redis_outage_loses_nothing_acknowledged(pair: Pair, redis_server: RedisServer) -> None:
    async with pair.user() as user:
        cid = await user.start("outage")
        await user.say(cid, "before")
        assert seqs(await frames_until(user, cid, 2, settle=0)) == [1, 2]

        redis_server.stop()
        try:
            acked = [await user.say(cid, f"during {n}", client_msg_id=f"d{n}") for n in range(5)]
            assert [r["seq"] for r in acked] == sorted(
                {r["seq"] for r in acked}
            )  # the store works: all acknowledged
            await until(lambda: "broker link lost" in pair.a.logs())
            # Redis stays down until the agent's replies are stored on B (the event, not a fixed 2 s):
            # what A then delivers it can only have caught up from the store
            await stored(user, cid, 12)
        finally:
            redis_server.start()
        during = await frames_until(user, cid, 12, timeout=30, settle=0)
        await user.say(cid, "after")
        after = await frames_until(user, cid, 14)
    assert seqs(during) == list(range(3, 13)), "every acknowledged message and its reply, once, in order"
    assert seqs(after) == [13, 14], "live delivery resumed"
    assert "catching up from the store" in pair.a.logs()


async def stored(client: WireClient, conversation_id: str, count: int, timeout: float = 20.0) -> None:
    """Until the store holds ``count`` messages of the conversation (its transcript, read on B)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.http.get("/api/transcript", params={"conversation_id": conversation_id})
        assert response.status_code == 200, response.text
        if len(response.json()["transcript"]) >= count:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{count} messages never stored"
        await asyncio.sleep(0.05)


async def until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
