"""Webhook agents end to end: a real gateway calls a real agent written with PyPI ``captivate-ai-api``.

The agent (webhook_agent_app.py) runs in its own process, checks every request with our
``verify_webhook`` and answers according to the user's text; a raw protocol client sees what a user sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from captivate_chat_api import CaptivateChatError, WebhookVerificationError
from captivate_chat_api.protocol import ChatRequest
from captivate_chat_api.server.agents import AgentError
from captivate_chat_api.server.agents.webhook import WebhookAgent
from captivate_chat_api.server.keys import hash_key
from captivate_chat_api.server.store import store_from_url
from captivate_chat_api.webhooks import sign_webhook, verify_webhook
from harness.forkserver import ForkedProcess, ForkServer, Job
from harness.gateway import GatewayProcess, new_key
from harness.tokens import add_keys, add_token
from harness.wire import WireClient

APP = Path(__file__).resolve().parent / "webhook_agent_app.py"
SECRET = "whsec_test_" + "k" * 24


class AgentProcess:
    """The webhook agent app in a child process on a loopback port."""

    def __init__(self, env: dict[str, str], port: int = 0) -> None:
        self.env, self.port = env, port
        self.proc: subprocess.Popen[str] | ForkedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AgentProcess:
        env = {**os.environ, **self.env}
        args = ["--port", str(self.port)]
        server = ForkServer.for_env(env)
        if server is not None:
            # `python webhook_agent_app.py ARGS` forked from the gateway fork server, which imported FastAPI,
            # uvicorn and httpx already (~1.1 CPU-s less a start): still a process of its own, on its own socket
            self.proc = server.spawn(Job(args, env, script=APP))
        else:
            self.proc = subprocess.Popen(
                [sys.executable, str(APP), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "agent listening on" in line, line
        self.port = int(line.rsplit(":", 1)[1])
        self._drains = [  # keep the pipes drained
            threading.Thread(target=stream.read, daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
            if stream is not None
        ]
        for drain in self._drains:
            drain.start()
        return self

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for drain in self._drains:
            drain.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def log(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.url}/_log", timeout=5).json()
        return result


async def set_channel(database: Path, key: str, **fields: Any) -> None:
    store = store_from_url(f"sqlite:///{database}")
    await store.open()
    try:
        channel = await store.channel_for_key_hash(hash_key(key))
        assert channel is not None
        await store.update_channel(channel.id, **fields)
    finally:
        await store.close()


class World:
    def __init__(
        self, database: Path, gateway: GatewayProcess, agent: AgentProcess, keys: dict[str, str]
    ) -> None:
        self.database, self.gateway, self.agent, self.keys = database, gateway, agent, keys

    def client(self, name: str = "main") -> WireClient:
        return WireClient(self.gateway.http_url, self.gateway.ws_url, self.keys[name])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    database = tmp_path_factory.mktemp("webhook") / "gw.db"
    keys = {"main": new_key(), "wrongsig": new_key()}
    # no auth cache: a channel's new settings apply to the very next event
    gateway = GatewayProcess(database, list(keys.values()), env={"CAPTIVATE_AUTH_CACHE_SECONDS": "0"}).start()
    try:
        push_token = asyncio.run(add_token(database, keys["main"], "push", "webhook agent"))
        agent = AgentProcess(
            {"AGENT_SECRET": SECRET, "GATEWAY_URL": gateway.http_url, "PUSH_TOKEN": push_token}
        ).start()
        try:
            spec = f"webhook:{agent.url}/agent"
            asyncio.run(set_channel(database, keys["main"], agent=spec, webhook_secret=SECRET))
            asyncio.run(
                set_channel(database, keys["wrongsig"], agent=spec, webhook_secret="not-the-agents-secret")
            )
            yield World(database, gateway, agent, keys)
        finally:
            agent.stop()
    finally:
        gateway.stop()
    assert SECRET not in gateway.logs() and "not-the-agents-secret" not in gateway.logs()


async def transcript(user: WireClient, cid: str) -> list[tuple[str, Any]]:
    entries = (await user.http.get("/api/transcript", params={"conversation_id": cid})).json()["transcript"]
    return [
        (e["from"], e["content"].get("text") if isinstance(e["content"], dict) else e["content"])
        for e in entries
    ]


async def quiet(user: WireClient, event_type: str, seconds: float = 1.0) -> None:
    with pytest.raises(AssertionError):
        await user.expect(event_type, timeout=seconds)


async def fails_then_recovers(user: WireClient, cid: str, text: str, code: int, desc: str) -> dict[str, Any]:
    """``text`` gives the user a clear general_error, stays in the transcript, and the next message works."""
    await user.say(cid, text)
    error = await user.expect("general_error", timeout=20)
    assert error["conversation_id"] == cid
    assert error["error_code"] == code and desc in error["error_desc"], error
    assert ("user", text) in await transcript(user, cid)
    await user.say(cid, "hello again")
    assert (await user.expect("bot_message"))["content"]["text"] == "Agent heard: hello again"
    return error


def attempts(agent: AgentProcess, since: int) -> list[dict[str, Any]]:
    return list(agent.log()["received"][since:])


# --- what a user sees when the agent answers --------------------------------------------------------


async def test_replies_buttons_and_cards_from_a_captivate_agent(world: World) -> None:
    async with world.client() as user:
        cid = await user.start("replies", userBasicInfo={"firstName": "Ada"})
        await user.say(cid, "hi there")
        assert (await user.expect("bot_message"))["content"] == {
            "type": "text",
            "text": "Agent heard: hi there",
        }
        await user.say(cid, "buttons")
        contents = [(await user.expect("bot_message"))["content"] for _ in range(3)]
        assert contents[0] == {"type": "text", "text": "Pick one"}
        assert contents[1] == {"type": "button", "buttons": {"title": "Plan", "options": ["Basic", "Pro"]}}
        assert contents[2]["type"] == "cards" and contents[2]["cards"][0]["link"] == "https://example.com/pro"
        await user.say(cid, "whoami")
        seen = (await user.expect("bot_message"))["content"]["text"]
        assert seen == 'I see {"crm_id": null, "firstName": "Ada", "plan": null}'
    received = world.agent.log()["received"]
    mine = [e for e in received if e.get("session_id") == cid]
    assert [e["text"] for e in mine] == ["hi there", "buttons", "whoami"]
    assert all(e["signed"] and e["content_type"] == "application/json" and "rejected" not in e for e in mine)
    assert len({e["delivery"] for e in mine}) == 3  # one delivery id per turn


async def test_bot_first_greeting_and_client_actions(world: World) -> None:
    async with world.client() as user:
        cid = await user.start("actions")
        await user.say(cid, "")  # bot-first: the agent greets
        assert (await user.expect("bot_message"))["content"]["text"] == "Hello from the webhook agent."
        await user.ok(
            "action", {"conversation_id": cid, "type": "normal", "id": "pick", "data": {"choice": "A"}}
        )
        assert (await user.expect("bot_message"))["content"][
            "text"
        ] == 'Agent got action pick {"choice": "A"}'
        await user.say(cid, "action")
        assert (await user.expect("bot_message"))["content"]["text"] == "Opening the page."
        action = await user.expect("action")
        assert action["actions"] == [{"id": "open_url", "data": {"url": "https://example.com/help"}}]


async def test_metadata_custom_private_and_title(world: World) -> None:
    async with world.client() as user:
        cid = await user.start("meta", metadata={"source": "web"})
        await user.say(cid, "meta")
        update = await user.expect("conversation_update", lambda p: p["type"] == "title_changed")
        assert update["data"]["title"] == "Order help"
        metadata = (await user.ok("metadata_request", {"conversation_id": cid}))["metadata"]
        assert metadata["plan"] == "gold" and metadata["source"] == "web"
        assert metadata["conversation_title"] == "Order help"
        assert (
            "crm_id" not in json.dumps(metadata) and "private" not in metadata
        )  # private never reaches a client
        await user.say(cid, "whoami")  # the agent gets its private metadata back on the next turn
        seen = await user.expect("bot_message", lambda p: p["content"]["text"].startswith("I see"))
        assert seen["content"]["text"] == 'I see {"crm_id": "c-42", "firstName": null, "plan": "gold"}'


async def test_escalate_to_human_stops_the_ai(world: World) -> None:
    async with world.client() as user:
        cid = await user.start("escalate")
        await user.say(cid, "human")
        assert (await user.expect("bot_message"))["content"]["text"] == "Connecting you to a human."
        started = await user.expect("conversation_update", lambda p: p["type"] == "livechat_started")
        assert started["conversation_id"] == cid
        await user.say(cid, "anyone there?")
        await quiet(user, "bot_message")
    asked = [e.get("text") for e in world.agent.log()["received"] if e.get("session_id") == cid]
    assert asked == ["human"]  # the agent was not called while a human has the conversation


async def test_async_push_after_an_empty_answer(world: World) -> None:
    async with world.client() as user:
        cid = await user.start("push")
        await user.say(cid, "later")
        pushed = await user.expect("bot_message")
        assert pushed["content"] == {"type": "text", "text": "Here is the answer, later."}
        assert not [f for f in user.frames if f["event"]["event_type"] == "general_error"]
        assert ("bot", "Here is the answer, later.") in await transcript(user, cid)
    for _ in range(50):  # the agent records the push's answer just after the gateway delivered it
        pushes = [p for p in world.agent.log()["pushes"] if p["session_id"] == cid]
        if pushes:
            break
        await asyncio.sleep(0.1)
    assert pushes == [{"session_id": cid, "result": {"status": "success", "session_id": cid}}]


async def test_429_with_retry_after_is_retried_with_the_same_delivery_id(world: World) -> None:
    async with world.client() as user:
        cid = await user.start("busy")
        since = len(world.agent.log()["received"])
        await user.say(cid, "busy")
        assert (await user.expect("bot_message"))["content"]["text"] == "Agent heard: busy"
    seen = attempts(world.agent, since)
    assert len(seen) == 2 and seen[0]["delivery"] == seen[1]["delivery"]


# --- failures: a clear general_error, the message kept, the next message answered -----------------


async def test_500_is_retried_then_bad_gateway(world: World) -> None:
    async with world.client() as user:
        cid = await user.start("fail500")
        since = len(world.agent.log()["received"])
        error = await fails_then_recovers(user, cid, "fail500", 502, "answered HTTP 500")
        assert "4 attempts" in error["error_desc"]
    seen = attempts(world.agent, since)[:4]
    assert [e["text"] for e in seen] == ["fail500"] * 4
    assert len({e["delivery"] for e in seen}) == 1  # the agent can tell a retry from a new message


async def test_400_is_not_retried(world: World) -> None:
    async with world.client() as user:
        cid = await user.start("fail400")
        since = len(world.agent.log()["received"])
        await fails_then_recovers(user, cid, "fail400", 502, "refused the request: HTTP 400")
    assert [e["text"] for e in attempts(world.agent, since)] == ["fail400", "hello again"]


async def test_invalid_json_and_invalid_body(world: World) -> None:
    async with world.client() as user:
        cid = await user.start("badjson")
        await fails_then_recovers(user, cid, "badjson", 502, "invalid JSON")
        await fails_then_recovers(user, cid, "badbody", 502, "invalid response (response:")


async def test_wrong_signature_is_refused_until_the_secret_is_fixed(world: World) -> None:
    async with world.client("wrongsig") as user:
        cid = await user.start("wrongsig")
        since = len(world.agent.log()["received"])
        await user.say(cid, "hello")
        error = await user.expect("general_error")
        assert error["error_code"] == 502 and "HTTP 401" in error["error_desc"]
        assert ("user", "hello") in await transcript(user, cid)
        seen = attempts(world.agent, since)
        assert len(seen) == 1 and seen[0]["rejected"] == "the webhook signature does not match"

        await set_channel(world.database, world.keys["wrongsig"], webhook_secret=SECRET)
        await user.say(cid, "hello again")
        assert (await user.expect("bot_message"))["content"]["text"] == "Agent heard: hello again"


def free_port() -> int:
    """A loopback port nothing listens on (the system just handed it out, and it is closed again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_agent_down_then_back(world: World) -> None:
    # the module's gateway (a channel of its own, with the default agent timeout and retries), and an agent
    # URL whose port nothing listens on until the agent starts there (one agent start, not a start and stop)
    key = new_key()
    await add_keys(world.database, [key])
    gateway = world.gateway
    agent = AgentProcess({"AGENT_SECRET": SECRET}, port=free_port())
    try:
        await set_channel(world.database, key, agent=f"webhook:{agent.url}/agent", webhook_secret=SECRET)
        async with WireClient(gateway.http_url, gateway.ws_url, key) as user:
            cid = await user.start("down")
            await user.say(cid, "is anyone home?")
            error = await user.expect("general_error", timeout=20)
            assert error["error_code"] == 502
            assert error["error_desc"].startswith(
                "the agent webhook could not be reached (connection refused)"
            )
            assert ("user", "is anyone home?") in await transcript(user, cid)
            agent.start()  # same port
            await user.say(cid, "hello again")
            assert (await user.expect("bot_message"))["content"]["text"] == "Agent heard: hello again"
    finally:
        if agent.proc is not None:
            agent.stop()


async def test_slow_agent_times_out_with_504(tmp_path: Path, world: World) -> None:
    key = new_key()
    gateway = GatewayProcess(tmp_path / "gw.db", [key], env={"CAPTIVATE_AGENT_TIMEOUT": "1"}).start()
    try:
        await set_channel(
            tmp_path / "gw.db", key, agent=f"webhook:{world.agent.url}/agent", webhook_secret=SECRET
        )
        async with WireClient(gateway.http_url, gateway.ws_url, key) as user:
            cid = await user.start("slow")
            await fails_then_recovers(user, cid, "slow", 504, "did not answer within 1 s")
    finally:
        gateway.stop()


# --- the WebhookAgent on its own, against the same real agent ---------------------------------------


async def test_webhook_agent_timeout_retries_then_504(world: World) -> None:
    agent = WebhookAgent(f"{world.agent.url}/agent", SECRET, timeout=0.3, max_attempts=2, backoff=0.01)
    since = len(world.agent.log()["received"])
    try:
        with pytest.raises(AgentError) as caught:
            await agent(ChatRequest(session_id="direct-slow", user_input="slow"))
    finally:
        await agent.aclose()
    assert caught.value.error_code == 504
    assert caught.value.error_desc == "the agent webhook did not answer within 0.3 s (2 attempts)"
    seen = attempts(world.agent, since)
    assert len(seen) == 2 and seen[0]["delivery"] == seen[1]["delivery"]


async def test_webhook_agent_whole_call_is_bounded(world: World) -> None:
    agent = WebhookAgent(f"{world.agent.url}/agent", SECRET, timeout=5, total_timeout=0.5, max_attempts=4)
    started = time.monotonic()
    try:
        with pytest.raises(AgentError) as caught:
            await agent(ChatRequest(session_id="direct-bounded", user_input="slow"))
    finally:
        await agent.aclose()
    assert caught.value.error_code == 504 and "(1 attempt)" in caught.value.error_desc
    assert time.monotonic() - started < 3  # bounded by total_timeout, not 4 x 5 s


async def test_webhook_agent_refuses_an_oversized_answer(world: World) -> None:
    agent = WebhookAgent(f"{world.agent.url}/agent", SECRET, max_response_bytes=100)
    try:
        with pytest.raises(AgentError, match="larger than 100 bytes"):
            await agent(ChatRequest(session_id="direct-big", user_input="buttons"))
    finally:
        await agent.aclose()


async def test_webhook_agent_checks_its_url_and_hides_its_secret() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookAgent("ftp://example.com/agent")
    agent = WebhookAgent("https://user:pw@agent.example/hook?token=abc", SECRET)
    try:
        assert SECRET not in repr(agent) and "abc" not in repr(agent) and "pw" not in repr(agent)
        assert agent.name == "webhook:https://agent.example/hook"
    finally:
        await agent.aclose()


# --- sign / verify ----------------------------------------------------------------------------------

BODY = b'{"session_id":"c1","user_input":"hi"}'


def test_sign_then_verify() -> None:
    headers = sign_webhook(SECRET, BODY, timestamp=1_700_000_000)
    assert headers["X-Captivate-Timestamp"] == "1700000000"
    assert (
        headers["X-Captivate-Signature"].startswith("sha256=") and len(headers["X-Captivate-Signature"]) == 71
    )
    verify_webhook(SECRET, BODY, headers, now=1_700_000_010)
    verify_webhook(SECRET.encode(), BODY, {k.lower(): v for k, v in headers.items()}, now=1_700_000_010)
    verify_webhook(
        SECRET, BODY, {k.upper(): v for k, v in sign_webhook(SECRET, BODY).items()}
    )  # now, by the clock


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign_webhook(SECRET, BODY, 1_700_000_000)["X-Captivate-Signature"] == f"sha256={expected}"


@pytest.mark.parametrize(
    ("secret", "body", "now", "message"),
    [
        (SECRET, BODY + b" ", 1_700_000_000, "does not match"),  # tampered body
        ("another-secret", BODY, 1_700_000_000, "does not match"),
        (SECRET, BODY, 1_700_000_301, "301 s old"),
        (SECRET, BODY, 1_699_999_699, "301 s in the future"),
    ],
)
def test_verify_refuses(secret: str, body: bytes, now: float, message: str) -> None:
    headers = sign_webhook(SECRET, BODY, timestamp=1_700_000_000)
    with pytest.raises(WebhookVerificationError, match=message) as caught:
        verify_webhook(secret, body, headers, now=now)
    assert isinstance(caught.value, CaptivateChatError)


def test_verify_refuses_missing_or_malformed_headers() -> None:
    good = sign_webhook(SECRET, BODY, timestamp=1_700_000_000)
    cases = {
        "missing X-Captivate-Timestamp": {"X-Captivate-Signature": good["X-Captivate-Signature"]},
        "missing X-Captivate-Signature": {"X-Captivate-Timestamp": "1700000000"},
        "not unix seconds": {**good, "X-Captivate-Timestamp": "yesterday"},
        "must start with 'sha256='": {**good, "X-Captivate-Signature": good["X-Captivate-Signature"][7:]},
    }
    for message, headers in cases.items():
        with pytest.raises(WebhookVerificationError, match=message):
            verify_webhook(SECRET, BODY, headers, now=1_700_000_000)
    with pytest.raises(WebhookVerificationError, match="does not match"):  # a timestamp swapped in is caught
        verify_webhook(SECRET, BODY, {**good, "X-Captivate-Timestamp": "1700000001"}, now=1_700_000_000)
    with pytest.raises(ValueError, match="empty"):
        sign_webhook("", BODY)


def test_the_verifier_imports_nothing_of_the_gateway() -> None:
    code = (
        "import sys, captivate_chat_api.webhooks\n"
        "bad = [m for m in sys.modules if m.startswith(('captivate_chat_api.server', 'fastapi', 'starlette'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
