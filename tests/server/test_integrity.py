"""Who may do what inside one tenant: live-chat identity from the token, the edit rule, one metadata limit
for every writer (a refused push changes nothing), the userBasicInfo limit, ambiguous credentials."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from harness.gateway import GatewayProcess, new_key
from harness.tokens import add_token
from harness.wire import MESSAGE_PATH, WireClient, envelope, tls


class Desk:
    def __init__(
        self, gateway: GatewayProcess, key: str, alice: str, bob: str, push: str, carol: str
    ) -> None:
        self.gateway, self.key, self.alice, self.bob, self.push = gateway, key, alice, bob, push
        self.carol = carol  # a supervisor

    def human(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=tls(),
            base_url=f"{self.gateway.http_url}/api/agent",
            headers={"x-agent-token": token},
            timeout=10,
        )

    def user(self) -> WireClient:
        return WireClient(self.gateway.http_url, self.gateway.ws_url, self.key)


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    database: Path = tmp_path_factory.mktemp("integrity") / "gw.db"
    key = new_key()
    gateway = GatewayProcess(database, [key], env={"CAPTIVATE_REVALIDATE_SECONDS": "0.5"}).start()
    try:
        yield Desk(
            gateway,
            key,
            asyncio.run(add_token(database, key, "human", "Alice")),
            asyncio.run(add_token(database, key, "human", "Bob")),
            asyncio.run(add_token(database, key, "push", "agent")),
            asyncio.run(add_token(database, key, "supervisor", "Carol")),
        )
    finally:
        gateway.stop()


async def transcript(user: WireClient, cid: str) -> list[tuple[str, str | None]]:
    entries = (await user.http.get("/api/transcript", params={"conversation_id": cid})).json()["transcript"]
    return [
        (e["from"], (e["content"] or {}).get("text") if isinstance(e["content"], dict) else None)
        for e in entries
    ]


async def test_live_chat_identity_comes_from_the_token(desk: Desk) -> None:
    async with desk.user() as user, desk.human(desk.alice) as alice, desk.human(desk.bob) as bob:
        cid = await user.start("identity")
        taken = await alice.post(f"/conversations/{cid}/take")
        assert taken.status_code == 200 and taken.json()["human_agent"] == "Alice"
        assert taken.json()["human_agent_id"].startswith("tok_")

        # Bob types Alice's name: refused, and so is Bob speaking or ending as himself
        forged = await bob.post(
            f"/conversations/{cid}/messages", json={"text": "I am Alice", "agent_name": "Alice"}
        )
        assert forged.status_code == 403, forged.text
        assert (await bob.post(f"/conversations/{cid}/messages", json={"text": "hi"})).status_code == 403
        assert (await bob.post(f"/conversations/{cid}/end")).status_code == 403
        assert (await alice.get(f"/conversations/{cid}")).json()["state"] == "human"

        assert (
            await alice.post(f"/conversations/{cid}/messages", json={"text": "Alice here"})
        ).status_code == 200
        live = await user.expect("livechat_message")
        assert live["content"]["text"] == "Alice here" and live["agent_name"] == "Alice"

        # a take-over is explicit and recorded; then the former owner may no longer speak
        assert (await bob.post(f"/conversations/{cid}/take")).status_code == 409
        over = await bob.post(f"/conversations/{cid}/take", json={"take_over": True})
        assert over.status_code == 200 and over.json()["human_agent"] == "Bob"
        assert (
            await alice.post(f"/conversations/{cid}/messages", json={"text": "still me"})
        ).status_code == 403
        assert (await bob.post(f"/conversations/{cid}/messages", json={"text": "Bob now"})).status_code == 200
        ended = await bob.post(f"/conversations/{cid}/end")
        assert ended.status_code == 200 and ended.json()["state"] == "ai"

        steps = await transcript(user, cid)
        assert ("system", "Bob took over the conversation from Alice.") in steps
        assert ("human_agent", "I am Alice") not in steps and ("human_agent", "still me") not in steps
        detail = (await alice.get(f"/conversations/{cid}")).json()["transcript"]
        assert [e["agent_name"] for e in detail if e["from"] == "human_agent"] == ["Alice", "Bob"]


async def test_a_supervisor_may_reply_in_and_end_another_agents_live_chat(desk: Desk) -> None:
    async with (
        desk.user() as user,
        desk.human(desk.alice) as alice,
        desk.human(desk.bob) as bob,
        desk.human(desk.carol) as carol,
    ):
        cid = await user.start("supervised")
        assert (await alice.post(f"/conversations/{cid}/take")).status_code == 200
        assert (
            await alice.post(f"/conversations/{cid}/messages", json={"text": "Alice here"})
        ).status_code == 200
        # another agent without the supervisor role may neither speak nor end it
        assert (await bob.post(f"/conversations/{cid}/messages", json={"text": "Bob"})).status_code == 403
        assert (await bob.post(f"/conversations/{cid}/end")).status_code == 403

        # the supervisor steps in without taking it over: stored and sent as the supervisor's
        forged = await carol.post(
            f"/conversations/{cid}/messages", json={"text": "as Alice", "agent_name": "Alice"}
        )
        assert forged.status_code == 403  # a supervisor never speaks as someone else either
        said = await carol.post(f"/conversations/{cid}/messages", json={"text": "Carol, supervising"})
        assert said.status_code == 200, said.text
        live = await user.expect("livechat_message", lambda p: p["content"]["text"] == "Carol, supervising")
        assert live["agent_name"] == "Carol" and live["supervisor"] is True
        detail = (await alice.get(f"/conversations/{cid}")).json()
        assert detail["state"] == "human" and detail["human_agent"] == "Alice"  # still Alice's chat
        marks = [
            (e["agent_name"], e.get("supervisor")) for e in detail["transcript"] if e["from"] == "human_agent"
        ]
        assert marks == [("Alice", None), ("Carol", True)]

        ended = await carol.post(f"/conversations/{cid}/end")
        assert ended.status_code == 200, ended.text
        assert ended.json()["state"] == "ai" and ended.json()["human_agent"] is None
        note = await user.expect("system_message", lambda p: "supervisor" in p)
        assert note["content"]["text"] == "Carol (supervisor) ended the live chat of Alice."
        assert note["supervisor"]["owner"] == detail["human_agent_id"]
        assert (
            note["supervisor"]["id"].startswith("tok_")
            and note["supervisor"]["id"] != note["supervisor"]["owner"]
        )
        # ended: nobody replies as a human any more
        assert (await carol.post(f"/conversations/{cid}/messages", json={"text": "late"})).status_code == 409


async def test_a_supervisors_console_socket_stays_open(desk: Desk) -> None:
    url = f"{desk.gateway.ws_url}/api/agent/ws?token={desk.carol}"
    async with websockets.connect(url, close_timeout=1) as socket:
        hello = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert hello["event"]["event_type"] == "agent_connected"
        await asyncio.sleep(1.5)  # live sockets' tokens are rechecked every 0.5 s here
        await socket.ping()
        assert socket.close_code is None


async def test_a_client_edits_only_the_users_own_messages(desk: Desk) -> None:
    async with desk.user() as user:
        cid = await user.start("editor")
        sent = await user.say(cid, "hello")
        bot = await user.expect("bot_message")
        forged = await user.post(
            "edit_message",
            {"conversation_id": cid, "message_id": bot["message_id"], "content": "I am the bot"},
        )
        assert forged.status_code == 403, forged.text
        assert forged.json()["error_code"] == 403
        own = await user.post(
            "edit_message", {"conversation_id": cid, "message_id": sent["message_id"], "content": "hello!"}
        )
        assert own.status_code == 200, own.text
        steps = await transcript(user, cid)
        assert steps == [("user", "hello!"), ("bot", "You said: hello")]


async def test_one_metadata_limit_for_every_writer_and_a_refused_push_changes_nothing(desk: Desk) -> None:
    async with (
        desk.user() as user,
        httpx.AsyncClient(verify=tls(), base_url=desk.gateway.http_url, timeout=10) as http,
    ):
        cid = await user.start("pusher")

        def push(custom: dict[str, object], text: str = "pushed") -> dict[str, object]:
            return {
                "session_id": cid,
                "response": [{"type": "text", "text": text}],
                "metadata": {"internal": {"channelMetadata": {"custom": custom}}},
            }

        big = await http.post(
            "/api/channel/v2/sendMessage", params={"token": desk.push}, json=push({"blob": "x" * 200_000})
        )
        assert big.status_code == 413, big.text
        ok = await http.post(
            "/api/channel/v2/sendMessage", params={"token": desk.push}, json=push({"a": "y" * 10_000})
        )
        assert ok.status_code == 200
        more = await http.post(
            "/api/channel/v2/sendMessage", params={"token": desk.push}, json=push({"b": "z" * 10_000})
        )
        assert more.status_code == 413  # together over the 16 KiB limit
        assert set((await user.ok("metadata_request", {"conversation_id": cid}))["metadata"]) == {"a"}
        # and the client can still set small metadata
        assert (
            await user.post("metadata", {"conversation_id": cid, "metadata": {"c": 1}})
        ).status_code == 200

        async with desk.human(desk.alice) as alice:
            assert (await alice.post(f"/conversations/{cid}/take")).status_code == 200
            refused = await http.post(
                "/api/channel/v2/sendMessage",
                params={"token": desk.push},
                json=push({"ticket": 7}, "too late"),
            )
            assert refused.status_code == 409
            assert (await user.ok("metadata_request", {"conversation_id": cid}))["metadata"] == {
                "a": "y" * 10_000,
                "c": 1,
            }
            await alice.post(f"/conversations/{cid}/end")
        assert ("bot", "too late") not in await transcript(user, cid)


async def test_user_basic_info_has_a_limit(desk: Desk) -> None:
    async with desk.user() as user:
        refused = await user.post(
            "conversation_start", {"userId": "big", "userBasicInfo": {"bio": "b" * 100_000}}
        )
        assert refused.status_code == 413, refused.text
        assert (
            await user.post("conversation_start", {"userId": "small", "userBasicInfo": {"name": "Ann"}})
        ).status_code == 200


async def test_ambiguous_credentials_are_refused(desk: Desk) -> None:
    gw = desk.gateway
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{gw.ws_url}/dev?apiKey=bad&apiKey={desk.key}")
    assert refused.value.response.status_code == 400
    body = envelope("get_user_conversations", {"userId": "u1"})
    async with httpx.AsyncClient(verify=tls(), base_url=gw.http_url, timeout=10) as http:
        twice = await http.post(
            MESSAGE_PATH, json=body, headers=[("x-api-key", desk.key), ("x-api-key", "bad")]
        )
        assert twice.status_code == 400 and "ambiguous" in twice.json()["error_desc"]
        once = await http.post(MESSAGE_PATH, json=body, headers={"x-api-key": desk.key})
        assert once.status_code == 200
        tokens = await http.get(
            "/api/agent/conversations", params={"token": "wrong"}, headers={"x-agent-token": desk.alice}
        )
        assert tokens.status_code == 400
