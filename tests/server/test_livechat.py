"""Hand-off end to end: client <-> AI, escalation, a human takes over through the agent API, ends, AI again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
import websockets

from harness.gateway import GatewayProcess, new_key
from harness.tokens import add_token
from harness.wire import WireClient, tls


class Setup:
    def __init__(
        self,
        gateway: GatewayProcess,
        key: str,
        human: str,
        push: str,
        other_key: str,
        other_human: str,
        bob: str,
    ) -> None:
        self.gateway, self.key, self.human_token, self.push_token, self.bob = gateway, key, human, push, bob
        self.other_key, self.other_human = other_key, other_human

    def human(self, token: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=tls(),
            base_url=f"{self.gateway.http_url}/api/agent",
            headers={"x-agent-token": token or self.human_token},
            timeout=10,
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    database = tmp_path_factory.mktemp("livechat") / "gw.db"
    key, other_key = new_key(), new_key()
    gateway = GatewayProcess(database, [key, other_key]).start()
    try:
        yield Setup(
            gateway,
            key,
            asyncio.run(add_token(database, key, "human", "Alice")),
            asyncio.run(add_token(database, key, "push", "agent")),
            other_key,
            asyncio.run(add_token(database, other_key, "human", "Mallory")),
            asyncio.run(add_token(database, key, "human", "Bob")),
        )
    finally:
        gateway.stop()


async def quiet(client: WireClient, event_type: str, seconds: float = 0.8) -> None:
    with pytest.raises(AssertionError):
        await client.expect(event_type, timeout=seconds)


async def test_hand_off_round_trip(setup: Setup) -> None:
    gw = setup.gateway
    async with (
        WireClient(gw.http_url, gw.ws_url, setup.key) as user,
        setup.human() as alice,
        setup.human(setup.bob) as bob,
    ):
        cid = await user.start("handoff-user")
        await user.say(cid, "human")
        assert (await user.expect("bot_message"))["content"]["text"] == "You said: human"
        started = await user.expect("conversation_update")
        assert started["type"] == "livechat_started" and started["data"]["state"] == "waiting_human"

        await user.say(cid, "are you there?")
        await quiet(user, "bot_message")  # the AI is not called while the conversation waits for a human

        waiting = (await alice.get("/conversations", params={"state": "waiting_human"})).json()[
            "conversations"
        ]
        assert cid in [c["conversation_id"] for c in waiting]

        async with websockets.connect(f"{gw.ws_url}/api/agent/ws?token={setup.human_token}") as feed:
            hello = json.loads(await feed.recv())["event"]
            socket_id = hello["event_payload"]["socket_id"]
            taken = await alice.post(f"/conversations/{cid}/take", json={"socket_id": socket_id})
            assert (
                taken.status_code == 200
                and taken.json()["state"] == "human"
                and taken.json()["human_agent"] == "Alice"
            )
            second = await bob.post(f"/conversations/{cid}/take")
            assert second.status_code == 409 and second.json()["error_code"] == 409

            sent = await alice.post(f"/conversations/{cid}/messages", json={"text": "Hi, Alice here."})
            assert sent.status_code == 200
            live = await user.expect("livechat_message")
            assert live["content"] == {"type": "text", "text": "Hi, Alice here."}
            bob_says = await bob.post(f"/conversations/{cid}/messages", json={"text": "me too"})
            assert bob_says.status_code == 403  # only the owner speaks

            await user.say(cid, "thanks Alice")
            frames = []
            while not any(f["event"]["event_type"] == "user_message" for f in frames):
                frames.append(json.loads(await asyncio.wait_for(feed.recv(), 5)))
            await quiet(user, "bot_message")

            ended = await alice.post(f"/conversations/{cid}/end")
            assert ended.status_code == 200 and ended.json()["state"] == "ai"
            assert (await user.expect("conversation_update"))["type"] == "livechat_ended"

        await user.say(cid, "back to the bot")
        assert (await user.expect("bot_message"))["content"]["text"] == "You said: back to the bot"

        transcript = (await user.http.get("/api/transcript", params={"conversation_id": cid})).json()[
            "transcript"
        ]
        steps = [(e["from"], e["content"].get("text")) for e in transcript]
        assert steps == [
            ("user", "human"),
            ("bot", "You said: human"),
            ("bot", "Let me find a human for you."),
            ("system", "You are being connected to a human agent."),
            ("user", "are you there?"),
            ("system", "Alice joined the conversation."),
            ("human_agent", "Hi, Alice here."),
            ("user", "thanks Alice"),
            ("system", "The live chat has ended."),
            ("user", "back to the bot"),
            ("bot", "You said: back to the bot"),
        ]


async def test_agent_api_is_scoped_to_its_channel_and_needs_a_token(setup: Setup) -> None:
    gw = setup.gateway
    async with (
        WireClient(gw.http_url, gw.ws_url, setup.key) as user,
        setup.human(setup.other_human) as mallory,
    ):
        cid = await user.start("scoped")
        await user.say(cid, "human")
        await user.expect("conversation_update")
        listed = (await mallory.get("/conversations")).json()["conversations"]
        assert cid not in [c["conversation_id"] for c in listed]
        for method, path in (
            ("get", f"/conversations/{cid}"),
            ("post", f"/conversations/{cid}/take"),
            ("post", f"/conversations/{cid}/end"),
            ("post", f"/conversations/{cid}/messages"),
        ):
            response = await mallory.request(method.upper(), path, json={"text": "x"})
            assert response.status_code == 404, path
    async with httpx.AsyncClient(verify=tls(), base_url=gw.http_url) as anonymous:
        assert (await anonymous.get("/api/agent/conversations")).status_code == 401
        assert (
            await anonymous.get("/api/agent/conversations", headers={"x-agent-token": setup.push_token})
        ).status_code == 401
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{gw.ws_url}/api/agent/ws?token=wrong")


async def test_manual_escalation_and_take_from_ai(setup: Setup) -> None:
    gw = setup.gateway
    async with WireClient(gw.http_url, gw.ws_url, setup.key) as user, setup.human() as alice:
        cid = await user.start("manual")
        taken = await alice.post(f"/conversations/{cid}/take", json={"agent_name": "Alice"})
        assert taken.status_code == 200
        assert (await user.expect("conversation_update"))["type"] == "livechat_started"
        await alice.post(f"/conversations/{cid}/end")
        escalated = await alice.post(f"/conversations/{cid}/escalate", json={"reason": "vip"})
        assert escalated.status_code == 200 and escalated.json()["state"] == "waiting_human"
        again = await alice.post(f"/conversations/{cid}/escalate")
        assert again.status_code == 409


async def test_async_push_v2_and_v1(setup: Setup) -> None:
    gw = setup.gateway
    async with (
        WireClient(gw.http_url, gw.ws_url, setup.key) as user,
        httpx.AsyncClient(verify=tls(), base_url=gw.http_url) as http,
    ):
        cid = await user.start("push-user")
        body = {
            "response": [{"type": "text", "text": "pushed later"}],
            "session_id": cid,
            "metadata": {"internal": {"channelMetadata": {"custom": {"ticket": 42}}}},
            "outgoing_action": [{"id": "open_url", "payload": {"url": "https://example.com"}}],
            "hasLivechat": False,
        }
        pushed = await http.post("/api/channel/v2/sendMessage", params={"token": setup.push_token}, json=body)
        assert pushed.status_code == 200, pushed.text
        assert (await user.expect("bot_message"))["content"]["text"] == "pushed later"
        assert (await user.expect("action"))["actions"] == [
            {"id": "open_url", "data": {"url": "https://example.com"}}
        ]
        assert (await user.ok("metadata_request", {"conversation_id": cid}))["metadata"] == {"ticket": 42}

        v1 = {
            "idChat": cid,
            "channel": "custom-channel",
            "message": {"messages": [{"type": "text", "text": "v1 push"}]},
        }
        assert (
            await http.post("/api/channel/sendMessage", headers={"x-agent-token": setup.push_token}, json=v1)
        ).status_code == 200
        assert (await user.expect("bot_message"))["content"]["text"] == "v1 push"

        assert (await http.post("/api/channel/v2/sendMessage", json=body)).status_code == 401
        foreign = {**body, "session_id": "not-a-conversation"}
        assert (
            await http.post("/api/channel/v2/sendMessage", params={"token": setup.push_token}, json=foreign)
        ).status_code == 404
        bad = await http.post(
            "/api/channel/v2/sendMessage", params={"token": setup.push_token}, content=b"{nope"
        )
        assert bad.status_code == 400

        async with setup.human() as alice:
            await alice.post(f"/conversations/{cid}/take")
            during = await http.post(
                "/api/channel/v2/sendMessage", params={"token": setup.push_token}, json=body
            )
            assert during.status_code == 409  # the bot never talks over a person
            await quiet(user, "bot_message")
