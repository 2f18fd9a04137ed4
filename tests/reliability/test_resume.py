"""Resume by ``seq`` at the edges: after network cuts (with a writer racing the replay) and after a gateway
restart, ``subscribe {after_seq}`` delivers every missed event exactly once, in order; when the platform
cannot replay (conversation deleted soft or hard, ``after_seq`` ahead of the log) the reply says so.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness.faultproxy import FaultProxy
from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient

UNTHROTTLED = {"CAPTIVATE_RATE_PER_SOCKET": "0", "CAPTIVATE_RATE_PER_KEY": "0"}


@pytest.fixture(scope="module")
def key() -> str:
    return new_key()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, key: str) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("resume") / "gw.db", [key], env=UNTHROTTLED).start()
    yield process
    process.stop()


def user() -> str:
    return f"resume-{uuid.uuid4().hex[:8]}"


class Seen:
    """The events of one conversation a client received, by ``seq``."""

    def __init__(self, client: WireClient, conversation_id: str) -> None:
        self.client, self.conversation_id = client, conversation_id
        self.events: list[dict[str, Any]] = []

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events]

    @property
    def last(self) -> int:
        return self.events[-1]["seq"] if self.events else 0

    def take(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Record ``frame`` if it is a stored event of the conversation; returns its event."""
        event: dict[str, Any] = frame["event"]
        payload = event["event_payload"]
        if payload.get("conversation_id") == self.conversation_id and isinstance(payload.get("seq"), int):
            self.events.append({"event_type": event["event_type"], **payload})
        return event

    async def until(self, seq: int, timeout: float = 20) -> None:
        """Read until the event ``seq`` (or a later one) has arrived."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.last < seq:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                self.take(await self.client.recv(max(remaining, 0.001)))
            except TimeoutError:
                raise AssertionError(
                    f"event {seq} of {self.conversation_id} never came; have {self.seqs}"
                ) from None

    async def subscribe_ws(self, after_seq: int | None) -> dict[str, Any]:
        """Subscribe over the WebSocket; read the replay up to the reply and return the reply's payload."""
        request_id = uuid.uuid4().hex
        payload: dict[str, Any] = {"conversation_id": self.conversation_id}
        if after_seq is not None:
            payload["after_seq"] = after_seq
        await self.client.send_ws("subscribe", payload, request_id=request_id)
        for _ in range(10_000):
            frame = await self.client.recv(20)
            event = self.take(frame)
            if frame.get("request_id") == request_id:
                result: dict[str, Any] = {"event_type": event["event_type"], **event["event_payload"]}
                return result
        raise AssertionError("no reply to subscribe")


async def reconnect(client: WireClient | None, http_url: str, ws_url: str, key: str) -> WireClient:
    if client is not None:
        await client.close()
    fresh = WireClient(http_url, ws_url, key)
    await fresh.connect()
    return fresh


async def test_cuts_with_a_writer_racing_the_replay_lose_and_repeat_nothing(
    gateway: GatewayProcess, key: str
) -> None:
    async with (
        FaultProxy("127.0.0.1", gateway.port) as proxy,
        WireClient(gateway.http_url, gateway.ws_url, key) as writer,
    ):
        via_proxy = (proxy.url, f"ws://127.0.0.1:{proxy.port}", key)
        client = await reconnect(None, *via_proxy)
        cid = await client.start(user())
        await writer.ok("metadata_request", {"conversation_id": cid})
        sent = 0

        async def say(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                sent += 1
                await writer.say(cid, f"m{sent}", client_msg_id=f"m{sent}")

        seen = Seen(client, cid)
        await say(1)
        await seen.until(2)  # the echo and the demo agent's reply
        for round_ in range(4):
            proxy.cut()
            await say(3)  # missed: the link is down
            client = await reconnect(client, *via_proxy)
            seen.client = client
            racing = asyncio.create_task(say(3))  # committed while the replay is being read
            if round_ % 2:
                reply = await client.ok("subscribe", {"conversation_id": cid, "after_seq": seen.last})
            else:
                reply = await seen.subscribe_ws(seen.last)
            await racing
            assert reply["recovered"] is True and reply["last_seq"] >= seen.last
            await seen.until(2 * sent)
        assert sent == 25
    assert seen.seqs == list(range(1, 2 * sent + 1)), "every event exactly once, in order"
    texts = [e["content"]["text"] for e in seen.events if e["event_type"] == "user_message"]
    assert texts == [f"m{n}" for n in range(1, sent + 1)]
    await client.close()


async def test_restart_replays_what_was_missed_before_and_after_it(gateway: GatewayProcess, key: str) -> None:
    async with WireClient(gateway.http_url, gateway.ws_url, key) as first:
        cid = await first.start(user())
        await first.say(cid, "before")
        await Seen(first, cid).until(2)
    async with WireClient(gateway.http_url, gateway.ws_url, key) as writer:  # while the first client is away
        await writer.ok("metadata_request", {"conversation_id": cid})
        missed = Seen(writer, cid)
        for n in range(3):
            await writer.say(cid, f"away {n}")
        await writer.ok("metadata", {"conversation_id": cid, "metadata": {"stage": "away"}})
        await missed.until(9)
    gateway.kill()  # the hard way, then the same database on the same port (the module's gateway lives on)
    gateway.start()
    async with WireClient(gateway.http_url, gateway.ws_url, key) as writer:
        await writer.say(cid, "after restart")
    async with WireClient(gateway.http_url, gateway.ws_url, key) as back:
        seen = Seen(back, cid)
        reply = await seen.subscribe_ws(2)
        await seen.until(11)
    assert reply == {
        "event_type": "subscribe_success",
        "conversation_id": cid,
        "last_seq": reply["last_seq"],
        "recovered": True,
    }
    assert reply["last_seq"] >= 10
    assert seen.seqs == list(range(3, 12))
    texts = [e["content"]["text"] for e in seen.events if e["event_type"] == "user_message"]
    assert texts == ["away 0", "away 1", "away 2", "after restart"]
    assert [e["event_type"] for e in seen.events].count("conversation_update") == 1


def normalized(body: dict[str, Any], conversation_id: str) -> dict[str, Any]:
    return {k: ("<id>" if v == conversation_id else v) for k, v in body.items()}


@pytest.mark.parametrize("soft", [True, False], ids=["soft-deleted", "hard-deleted"])
async def test_a_deleted_conversation_cannot_be_resumed_and_the_reply_says_so(
    gateway: GatewayProcess, key: str, soft: bool
) -> None:
    async with (
        WireClient(gateway.http_url, gateway.ws_url, key) as owner,
        WireClient(gateway.http_url, gateway.ws_url, key) as tab,
    ):
        cid = await owner.start(user())
        await owner.say(cid, "soon gone")
        seen = Seen(tab, cid)
        assert (await seen.subscribe_ws(0))["recovered"] is True
        await seen.until(2)
        await owner.ok("delete_conversation", {"conversation_id": cid, "softdelete": soft})
        assert (await tab.expect("conversation_update"))["type"] == "deleted"

        unknown = str(uuid.uuid4())
        over_ws = await seen.subscribe_ws(0)
        assert over_ws["event_type"] == "general_error"
        assert (
            over_ws["error_code"] == 404 and over_ws["recovered"] is False and "deleted" in over_ws["reason"]
        )
        as_if_unknown = await Seen(tab, unknown).subscribe_ws(0)
        assert normalized(over_ws, cid) == normalized(as_if_unknown, unknown)

        over_http = await tab.post("subscribe", {"conversation_id": cid, "after_seq": 0})
        assert over_http.status_code == 404
        assert over_http.json() == {
            "error_code": 404,
            "error_desc": "conversation not found",
            "recovered": False,
            "reason": over_ws["reason"],
        }
        unknown_http = await tab.post("subscribe", {"conversation_id": unknown, "after_seq": 0})
        assert (unknown_http.status_code, unknown_http.json()) == (404, over_http.json())
    assert seen.seqs == [1, 2], "nothing of a deleted conversation is replayed"


async def test_after_seq_ahead_of_the_log_says_so_and_live_events_still_flow(
    gateway: GatewayProcess, key: str
) -> None:
    async with (
        WireClient(gateway.http_url, gateway.ws_url, key) as client,
        WireClient(gateway.http_url, gateway.ws_url, key) as other,
    ):
        cid = await client.start(user())
        await client.say(cid, "one")
        seen = Seen(client, cid)
        await seen.until(2)
        for ahead in (3, 500):
            over_http = await client.ok("subscribe", {"conversation_id": cid, "after_seq": ahead})
            assert (
                over_http["recovered"] is False
                and "ahead" in over_http["reason"]
                and over_http["last_seq"] == 2
            )
            over_ws = await seen.subscribe_ws(ahead)
            assert {k: over_ws[k] for k in ("event_type", "recovered", "last_seq")} == {
                "event_type": "subscribe_success",
                "recovered": False,
                "last_seq": 2,
            }
        # A log behind the client (e.g. a database restored from a backup) grows again: those are new events,
        # and the socket that was told "not recovered" must receive them.
        await other.say(cid, "new after the rewind")
        await seen.until(4)
        level = await seen.subscribe_ws(4)  # up to date: nothing to replay, nothing lost
        assert level["recovered"] is True and "reason" not in level
    assert seen.seqs == [1, 2, 3, 4]
