"""Tenant isolation (BOLA), exhaustively: with tenant B's API key, socket, human token and push token, try
every client event (HTTP and WebSocket), route and token on tenant A's conversations, users, messages and
sockets. Every refusal must be exactly the answer for an id that does not exist, nothing of A may reach B
(nor of B reach A), and A's data is unchanged afterwards.

``CAPTIVATE_BOLA_JSON=path`` writes ``{"cross_tenant_attempts": N, "successes": S}`` (reliability report).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import websockets

from harness.gateway import GatewayProcess, new_key
from harness.tokens import add_token
from harness.wire import MESSAGE_PATH, WireClient, envelope, tls

UNTHROTTLED = {"CAPTIVATE_RATE_PER_SOCKET": "0", "CAPTIVATE_RATE_PER_KEY": "0"}
MARK_A, MARK_B = f"a-secret-{uuid.uuid4().hex}", f"b-secret-{uuid.uuid4().hex}"
"""Text that only A's (B's) own data carries: it must never show up in anything the other side receives."""
Answer = tuple[Any, str]
"""A status (HTTP code, or the WebSocket reply's event type) and the body as JSON with the probed ids masked."""


@dataclass
class Keys:
    gateway: GatewayProcess
    key: dict[str, str]
    human: dict[str, str]
    push: dict[str, str]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    database = tmp_path_factory.mktemp("bola") / "gw.db"
    key = {"A": new_key(), "B": new_key()}
    gateway = GatewayProcess(database, [key["A"], key["B"]], env=UNTHROTTLED).start()
    try:
        human = {t: asyncio.run(add_token(database, key[t], "human", f"human {t}")) for t in "AB"}
        push = {t: asyncio.run(add_token(database, key[t], "push", f"push {t}")) for t in "AB"}
        yield Keys(gateway, key, human, push)
    finally:
        gateway.stop()


@dataclass
class Ledger:
    attempts: int = 0
    successes: list[str] = field(default_factory=list)

    def record(self, what: str, leaked: bool, detail: object = "", *, attempt: bool = True) -> None:
        """One cross-tenant attempt and whether it got anything (``attempt=False``: a check over several)."""
        self.attempts += attempt
        if leaked:
            self.successes.append(f"{what}: {detail}")

    def refused_alike(self, what: str, foreign: Answer, unknown: Answer) -> None:
        """A refusal that says no more than the answer for an id that does not exist."""
        is_error = foreign[0] == "general_error" or (isinstance(foreign[0], int) and 400 <= foreign[0] < 500)
        self.record(what, foreign != unknown or not is_error, f"{foreign} vs unknown {unknown}")


def masked(body: Any, *ids: str) -> str:
    text = json.dumps(body, sort_keys=True)
    for value in ids:
        text = text.replace(value, "<id>")
    return text


class Side:
    """One tenant's live parts: a client socket (with HTTP) and a human agent's feed."""

    def __init__(self, keys: Keys, tenant: str) -> None:
        self.keys, self.tenant = keys, tenant
        gw = keys.gateway
        self.client = WireClient(gw.http_url, gw.ws_url, keys.key[tenant])
        self.human = httpx.AsyncClient(
            verify=tls(),
            base_url=f"{gw.http_url}/api/agent",
            headers={"x-agent-token": keys.human[tenant]},
            timeout=10,
        )
        self.anon = httpx.AsyncClient(verify=tls(), base_url=gw.http_url, timeout=10)
        self.feed_frames: list[dict[str, Any]] = []
        self.seen: list[str] = []
        """Every HTTP body this side received (frames are in ``client.frames`` and ``feed_frames``)."""

    async def __aenter__(self) -> Self:
        await self.client.connect()
        gw = self.keys.gateway
        self.feed = await websockets.connect(f"{gw.ws_url}/api/agent/ws?token={self.keys.human[self.tenant]}")
        hello = json.loads(await self.feed.recv())["event"]["event_payload"]
        self.feed_socket, self.channel_id = hello["socket_id"], hello["channel_id"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.feed.close()
        await self.client.close()
        await self.human.aclose()
        await self.anon.aclose()

    def everything_received(self) -> str:
        return json.dumps([self.seen, self.client.frames, self.feed_frames])

    async def answer(self, response: httpx.Response, *ids: str) -> Answer:
        self.seen.append(response.text)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return response.status_code, masked(body, *ids)

    async def post(
        self, event_type: str, payload: dict[str, Any], *ids: str, socket_id: str | None = "own"
    ) -> Answer:
        sid = self.client.socket_id if socket_id == "own" else socket_id
        response = await self.client.http.post(MESSAGE_PATH, json=envelope(event_type, payload, sid))
        return await self.answer(response, *ids)

    async def ws(self, event_type: str, payload: dict[str, Any], *ids: str) -> Answer:
        """Send over the client socket; the reply carrying our request_id (other frames are kept)."""
        request_id = uuid.uuid4().hex
        await self.client.send_ws(event_type, payload, request_id=request_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        for _ in range(10_000):
            try:
                frame = await self.client.recv(max(0.001, deadline - loop.time()))
            except TimeoutError:
                return "no reply", ""
            if frame.get("request_id") == request_id:
                return frame["event"]["event_type"], masked(frame["event"]["event_payload"], *ids)
        return "no reply", ""

    async def feed_until(self, conversation_id: str) -> None:
        """Read the agent feed up to a ``handoff_update`` of ``conversation_id`` (earlier frames are kept)."""
        for _ in range(1000):
            frame = json.loads(await asyncio.wait_for(self.feed.recv(), 10))
            self.feed_frames.append(frame)
            if frame["event"]["event_payload"].get("conversation_id") == conversation_id:
                return
        raise AssertionError("no handoff_update")

    async def say(self, conversation_id: str, text: str, client_msg_id: str) -> dict[str, Any]:
        return await self.client.say(conversation_id, text, client_msg_id)


@dataclass
class World:
    a: Side
    b: Side
    ledger: Ledger
    a_user: str
    a_cid: str
    a_mid: str
    a_client_msg_id: str
    a_text: str
    b_cid: str
    b_cids: set[str] = field(default_factory=set)
    """Every conversation B created: none may show up on A's sockets."""


def unknown_id() -> str:
    return str(uuid.uuid4())


CONVERSATION_EVENTS: list[tuple[str, dict[str, Any]]] = [
    (
        "user_message",
        {"type": "message_create", "content": {"type": "text", "text": "hi"}, "client_msg_id": "b-1"},
    ),
    ("metadata", {"metadata": {"plan": "stolen", "private": {"note": "x"}}, "client_msg_id": "b-2"}),
    ("metadata_request", {}),
    ("action", {"type": "normal", "id": "buy", "data": {"sku": 1}}),
    ("edit_message", {"type": "message_create", "message_id": "<mid>", "content": "edited by B"}),
    ("conversation_transcript_request", {}),
    ("subscribe", {"after_seq": 0}),
    ("subscribe", {}),
    ("delete_conversation", {"softdelete": True}),
    ("delete_conversation", {"softdelete": False}),
]


async def conversation_events(w: World) -> None:
    """Every conversation-scoped event on A's conversation: HTTP (with and without a socket) and WebSocket."""
    for event_type, template in CONVERSATION_EVENTS:
        a_ids, u_ids = (w.a_cid, w.a_mid), (unknown_id(), "msg_unknown")
        foreign = {**template, "conversation_id": a_ids[0]}
        unknown = {**template, "conversation_id": u_ids[0]}
        if "message_id" in template:
            foreign["message_id"], unknown["message_id"] = a_ids[1], u_ids[1]
        for transport in ("http+socket", "http", "ws"):
            if transport == "ws":
                got = await w.b.ws(event_type, foreign, *a_ids), await w.b.ws(event_type, unknown, *u_ids)
            else:
                sid = "own" if transport == "http+socket" else None
                got = (
                    await w.b.post(event_type, foreign, *a_ids, socket_id=sid),
                    await w.b.post(event_type, unknown, *u_ids, socket_id=sid),
                )
            w.ledger.refused_alike(f"{event_type} {sorted(template)} over {transport}", *got)


async def users_and_listings(w: World) -> None:
    """conversation_start as A's user, listings of A's user, apiKeys, delete_user_conversations."""
    b_key, a_key = w.b.keys.key["B"], w.a.keys.key["A"]
    status, over_http = await w.b.post("conversation_start", {"userId": w.a_user, "metadata": {"who": "B"}})
    kind, over_ws = await w.b.ws("conversation_start", {"userId": w.a_user})
    assert (status, kind) == (200, "conversation_start_success"), (
        "any key may start a conversation for any user id"
    )
    started = [json.loads(over_http)["conversation_id"], json.loads(over_ws)["conversation_id"]]
    w.b_cids.update(started)
    a_listing = await w.a.client.ok("get_user_conversations", {"userId": w.a_user})
    w.ledger.record(
        "B's conversations for A's user are invisible to A",
        [c["conversation_id"] for c in a_listing["conversations"]] != [w.a_cid],
        a_listing,
    )
    for cid in started:  # and A cannot reach them either
        other = unknown_id()
        w.ledger.refused_alike(
            "A reads B's conversation for A's user",
            await w.a.post("metadata_request", {"conversation_id": cid}, cid),
            await w.a.post("metadata_request", {"conversation_id": other}, other),
        )

    listings = [
        ("get_user_conversations", {"userId": w.a_user}),
        ("get_user_conversations_v2", {"userId": w.a_user, "pagination": {"page": 1, "limit": 50}}),
        ("get_user_conversations_v2", {"userId": w.a_user, "filter": {"plan": MARK_A}}),
        ("get_user_conversations_v2", {"userId": w.a_user, "search": {"plan": "secret"}}),
        ("get_user_conversations_v2", {"userId": w.a_user, "apiKeys": [b_key]}),
    ]
    for event_type, payload in listings:
        for transport in ("http", "ws"):
            if transport == "http":
                _, body = await w.b.post(event_type, payload)
            else:
                _, body = await w.b.ws(event_type, payload)
            listed = json.loads(body).get("conversations", [])
            ids = {c["conversation_id"] for c in listed}
            leaked = (
                w.a_cid in ids or any(c.get("apiKey") != b_key for c in listed) or not ids <= set(started)
            )
            w.ledger.record(f"{event_type} {sorted(payload)} over {transport}", leaked, listed)

    a_prefix = a_key[:10] + "…"
    not_keys = [a_prefix, a_key[:-1], a_key.upper(), w.a.channel_id, w.a.keys.human["A"], w.a.keys.push["A"]]
    for fake in not_keys:
        payload = {"userId": w.a_user, "apiKeys": [fake]}
        unknown = {"userId": w.a_user, "apiKeys": [new_key()]}
        w.ledger.refused_alike(
            "apiKeys with a non-key of A (HTTP)",
            await w.b.post("get_user_conversations_v2", payload),
            await w.b.post("get_user_conversations_v2", unknown),
        )
        w.ledger.refused_alike(
            "apiKeys with a non-key of A (WS)",
            await w.b.ws("get_user_conversations_v2", payload),
            await w.b.ws("get_user_conversations_v2", unknown),
        )
    # Control, not an attack (and not in b.seen): presenting A's real key is how one lists across keys.
    both = await w.b.client.ok("get_user_conversations_v2", {"userId": w.a_user, "apiKeys": [a_key]})
    assert w.a_cid in {c["conversation_id"] for c in both["conversations"]}

    for transport, soft in (("http", False), ("ws", True)):
        payload = {"userId": w.a_user, "softdelete": soft}
        _, body = await (w.b.post if transport == "http" else w.b.ws)("delete_user_conversations", payload)
        still_there = (
            await w.a.client.http.get("/api/transcript", params={"conversation_id": w.a_cid})
        ).status_code == 200
        w.ledger.record(f"delete_user_conversations of A's user over {transport}", not still_there, body)


async def messages_and_links(w: World) -> None:
    """The transcript, the 413 message link, message ids and client_msg_ids of A used from B's side."""
    other = unknown_id()
    get = w.b.client.http.get
    w.ledger.refused_alike(
        "GET /api/transcript",
        await w.b.answer(await get("/api/transcript", params={"conversation_id": w.a_cid}), w.a_cid),
        await w.b.answer(await get("/api/transcript", params={"conversation_id": other}), other),
    )
    link = "/api/custom-channel/messages/{}/{}"
    w.ledger.refused_alike(
        "GET message link of A's message",
        await w.b.answer(await get(link.format(w.a_cid, w.a_mid)), w.a_cid, w.a_mid),
        await w.b.answer(await get(link.format(other, "msg_unknown")), other, "msg_unknown"),
    )
    w.ledger.refused_alike(
        "GET message link: A's message under B's conversation",
        await w.b.answer(await get(link.format(w.b_cid, w.a_mid)), w.a_mid),
        await w.b.answer(await get(link.format(w.b_cid, "msg_unknown")), "msg_unknown"),
    )
    for transport in ("http", "ws"):
        send = w.b.post if transport == "http" else w.b.ws
        edit = {"conversation_id": w.b_cid, "type": "message_create", "content": "edited by B"}
        w.ledger.refused_alike(
            f"edit_message of A's message under B's conversation over {transport}",
            await send("edit_message", {**edit, "message_id": w.a_mid}, w.a_mid),
            await send("edit_message", {**edit, "message_id": "msg_unknown"}, "msg_unknown"),
        )
    # the same client_msg_id and content as A's message, in B's conversation: a new message of B's
    same = await w.b.say(w.b_cid, w.a_text, w.a_client_msg_id)
    w.ledger.record("A's client_msg_id reused by B", same["duplicate"] or same["message_id"] == w.a_mid, same)


async def socket_ids(w: World) -> str:
    """B names A's socket id in its posts; returns the conversation B started that way."""
    a_socket, fake = w.a.client.socket_id or "", uuid.uuid4().hex
    for cid in (w.b_cid, w.a_cid):
        w.ledger.refused_alike(
            "subscribe naming A's socket",
            await w.b.post(
                "subscribe", {"conversation_id": cid, "after_seq": 0}, a_socket, socket_id=a_socket
            ),
            await w.b.post("subscribe", {"conversation_id": cid, "after_seq": 0}, fake, socket_id=fake),
        )
    other = unknown_id()
    w.ledger.refused_alike(
        "metadata_request on A's conversation naming A's socket",
        await w.b.post("metadata_request", {"conversation_id": w.a_cid}, w.a_cid, socket_id=a_socket),
        await w.b.post("metadata_request", {"conversation_id": other}, other, socket_id=a_socket),
    )
    # Judged in live_delivery by what A's socket received: B's conversation must not be on it.
    status, body = await w.b.post("conversation_start", {"userId": "hijacker"}, socket_id=a_socket)
    assert status == 200, body
    hijack = json.loads(body)["conversation_id"]
    w.b_cids.add(hijack)
    await w.b.post("metadata_request", {"conversation_id": hijack})  # B's own socket follows it too
    await w.b.post(
        "user_message", {"conversation_id": hijack, "content": f"via A's socket {MARK_B}"}, socket_id=a_socket
    )
    # once B's own socket has the reply, A's would have it too if it were bound
    await w.b.client.expect("bot_message", lambda p: p["conversation_id"] == hijack)
    return hijack


async def agents_and_pushes(w: World) -> None:
    """B's human token on A's conversations, B's push token to them, B's agent feed."""
    other = unknown_id()
    for method, path, body in (
        ("GET", "/conversations/{}", None),
        ("POST", "/conversations/{}/take", {"agent_name": "Mallory"}),
        ("POST", "/conversations/{}/messages", {"text": f"from B {MARK_B}"}),
        ("POST", "/conversations/{}/end", {}),
        ("POST", "/conversations/{}/escalate", {"reason": "B says so"}),
    ):
        foreign = await w.b.human.request(method, path.format(w.a_cid), json=body)
        unknown = await w.b.human.request(method, path.format(other), json=body)
        w.ledger.refused_alike(
            f"agent API {method} {path}", await w.b.answer(foreign, w.a_cid), await w.b.answer(unknown, other)
        )
    for state in ("", "?state=waiting_human", "?state=human", "?state=waiting_human,human"):
        listed = await w.b.answer(await w.b.human.get(f"/conversations{state}"))
        w.ledger.record(f"agent API list{state}", w.a_cid in listed[1], listed)

    push = w.b.keys.push["B"]
    v2 = {"response": [{"type": "text", "text": f"pushed by B {MARK_B}"}]}
    v1 = {"channel": "custom", "message": {"messages": [{"type": "text", "text": "v1 by B"}]}}
    for name, path, auth, foreign, unknown in (
        (
            "v2 header",
            "/api/channel/v2/sendMessage",
            {"headers": {"x-agent-token": push}},
            {**v2, "session_id": w.a_cid},
            {**v2, "session_id": other},
        ),
        (
            "v2 query",
            "/api/channel/v2/sendMessage",
            {"params": {"token": push}},
            {**v2, "session_id": w.a_cid},
            {**v2, "session_id": other},
        ),
        (
            "v1",
            "/api/channel/sendMessage",
            {"headers": {"x-agent-token": push}},
            {**v1, "idChat": w.a_cid},
            {**v1, "idChat": other},
        ),
    ):
        got_f = await w.b.answer(await w.b.anon.post(path, json=foreign, **auth), w.a_cid)  # type: ignore[arg-type]
        got_u = await w.b.answer(await w.b.anon.post(path, json=unknown, **auth), other)  # type: ignore[arg-type]
        w.ledger.refused_alike(f"push {name} to A's conversation", got_f, got_u)

    # B's human takes B's own conversation naming A's agent feed: judged in live_delivery by A's feed.
    b_live = (await w.b.client.ok("conversation_start", {"userId": "bob-live"}))["conversation_id"]
    w.b_cids.add(b_live)
    taken = await w.b.human.post(f"/conversations/{b_live}/take", json={"socket_id": w.a.feed_socket})
    said = await w.b.human.post(
        f"/conversations/{b_live}/messages", json={"text": f"B human {MARK_B}", "socket_id": w.a.feed_socket}
    )
    assert taken.status_code == said.status_code == 200, (taken.text, said.text)


async def live_delivery(w: World) -> None:
    """A's live events reach no socket of B, and B's none of A's (FIFO barriers instead of waiting)."""
    taken = await w.a.human.post(f"/conversations/{w.a_cid}/take", json={"socket_id": w.a.feed_socket})
    assert taken.status_code == 200, taken.text
    sent = await w.a.human.post(f"/conversations/{w.a_cid}/messages", json={"text": f"A human {MARK_A}"})
    assert sent.status_code == 200, sent.text
    await w.a.client.expect("livechat_message", lambda p: p["conversation_id"] == w.a_cid)
    await w.a.feed_until(w.a_cid)  # A's take: after anything B's side could have leaked into A's feed
    # barriers: a direct reply on B's socket, and B's own hand-off on B's feed, come after any leak
    assert (await w.b.ws("metadata_request", {"conversation_id": w.b_cid}))[0] == "conversation_metadata"
    escalated = await w.b.human.post(f"/conversations/{w.b_cid}/escalate", json={})
    assert escalated.status_code == 200, escalated.text
    await w.b.feed_until(w.b_cid)
    assert (await w.a.ws("metadata_request", {"conversation_id": w.a_cid}))[0] == "conversation_metadata"
    pushed_to_b = [f for f in w.b.client.frames + w.b.feed_frames if mentions(f, {w.a_cid})]
    w.ledger.record("A's events on B's socket and agent feed", bool(pushed_to_b), pushed_to_b)
    w.ledger.record("A's data in anything B received", MARK_A in w.b.everything_received(), attempt=False)
    pushed_to_a = [f for f in w.a.client.frames if mentions(f, w.b_cids)]
    w.ledger.record("socket-id hijack: B's events on A's socket", bool(pushed_to_a), pushed_to_a)
    fed_to_a = [f for f in w.a.feed_frames if mentions(f, w.b_cids)]
    w.ledger.record("B's hand-off and messages on A's agent feed", bool(fed_to_a), fed_to_a)
    w.ledger.record("B's data in anything A received", MARK_B in w.a.everything_received(), attempt=False)


def mentions(frame: dict[str, Any], conversation_ids: set[str]) -> bool:
    """An event pushed about one of ``conversation_ids`` (replies to one's own requests, which carry a
    ``request_id`` and echo the id asked about, are not pushes)."""
    return (
        "request_id" not in frame
        and frame["event"]["event_payload"].get("conversation_id") in conversation_ids
    )


async def snapshot(side: Side, cid: str) -> dict[str, Any]:
    transcript = (await side.client.http.get("/api/transcript", params={"conversation_id": cid})).json()
    metadata = await side.client.ok("metadata_request", {"conversation_id": cid})
    agent_view = (await side.human.get(f"/conversations/{cid}")).json()
    return {"transcript": transcript, "metadata": metadata, "agent": agent_view}


async def test_tenant_b_reaches_nothing_of_tenant_a(keys: Keys) -> None:
    async with Side(keys, "A") as a, Side(keys, "B") as b:
        a_user = f"alice-{uuid.uuid4().hex[:8]}"
        a_cid = await a.client.start(a_user, metadata={"plan": MARK_A, "private": {"ssn": MARK_A}})
        a_text = f"hello {uuid.uuid4().hex}"
        hello = await a.say(a_cid, a_text, f"a-{uuid.uuid4().hex}")
        await a.client.expect("bot_message", lambda p: p["conversation_id"] == a_cid)
        await a.say(a_cid, "human", f"a-{uuid.uuid4().hex}")  # the demo agent hands it to the humans' queue
        await a.client.expect("conversation_update", lambda p: p["type"] == "livechat_started")
        await a.feed_until(a_cid)
        before = await snapshot(a, a_cid)
        assert before["agent"]["state"] == "waiting_human" and before["agent"]["private_metadata"] == {
            "ssn": MARK_A
        }

        b_cid = await b.client.start("bob")
        await b.say(b_cid, f"hi {MARK_B}", "b-0")
        world = World(
            a, b, Ledger(), a_user, a_cid, hello["message_id"], hello["client_msg_id"], a_text, b_cid, {b_cid}
        )
        await conversation_events(world)
        await users_and_listings(world)
        await messages_and_links(world)
        await socket_ids(world)
        await agents_and_pushes(world)

        after = await snapshot(a, a_cid)
        world.ledger.record(
            "A's transcript, metadata or hand-off state changed", after != before, after, attempt=False
        )
        await live_delivery(world)

    ledger = world.ledger
    report = os.environ.get("CAPTIVATE_BOLA_JSON")
    if report:
        Path(report).write_text(
            json.dumps({"cross_tenant_attempts": ledger.attempts, "successes": len(ledger.successes)})
        )
    print(f"\nBOLA: {ledger.attempts} cross-tenant attempts, {len(ledger.successes)} successes")
    assert ledger.attempts >= 80, "the probes did not all run"
    assert not ledger.successes, "\n".join(ledger.successes)
