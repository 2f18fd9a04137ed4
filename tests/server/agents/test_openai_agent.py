"""``openai:MODEL`` end to end: a real gateway streams a model's reply from an OpenAI-compatible API.

The API is a fake (tests cannot reach a real model) that speaks the real chat-completions format.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI, echo

from captivate_chat_api.protocol import ChatRequest
from captivate_chat_api.server.agents import AgentError
from captivate_chat_api.server.agents.openai_agent import GREETING_REQUEST, OpenAIAgent, OpenAISettings
from captivate_chat_api.server.keys import hash_key
from captivate_chat_api.server.store import NewEvent, store_from_url
from harness.gateway import GatewayProcess, new_key
from harness.tokens import set_agent
from harness.wire import WireClient

API_KEY = "sk-test-" + os.urandom(12).hex()
SYSTEM_PROMPT = "You are the test assistant of Example Corp."
SYSTEM = {"role": "system", "content": SYSTEM_PROMPT}
CHUNK_DELAY = 0.05
RETRY_AFTER_MS = 20


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(API_KEY, chunk_delay=CHUNK_DELAY).start()
    yield server
    server.stop()


def openai_gateway(
    database: Path, fake: FakeOpenAI, agent_timeout: float
) -> Iterator[tuple[GatewayProcess, str]]:
    key = new_key()
    env = {
        "CAPTIVATE_AGENT_BASE_URL": fake.base_url,
        "CAPTIVATE_AGENT_API_KEY": API_KEY,
        "CAPTIVATE_AGENT_SYSTEM_PROMPT": SYSTEM_PROMPT,
        "CAPTIVATE_AGENT_TIMEOUT": f"{agent_timeout:g}",
        "CAPTIVATE_LOG_LEVEL": "debug",  # the most the gateway ever logs: the key must be in none of it
    }
    # openai imported by the fork server, once for both gateways (the gateway's first turn would import it)
    process = GatewayProcess(database, [key], env=env, preload=("openai",)).start()
    try:
        asyncio.run(set_agent(database, key, "openai:fake-model"))  # before any request: nothing cached yet
        yield process, key
    finally:
        process.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI
) -> Iterator[tuple[GatewayProcess, str]]:
    # generous: the first turn imports openai (seconds on a loaded machine)
    yield from openai_gateway(tmp_path_factory.mktemp("openai") / "gw.db", fake, 8)


@pytest.fixture
def quick_gateway(tmp_path: Path, fake: FakeOpenAI) -> Iterator[tuple[GatewayProcess, str]]:
    """A gateway whose agent turns time out after 1 s."""
    yield from openai_gateway(tmp_path / "gw.db", fake, 1)


def client_for(gateway: tuple[GatewayProcess, str]) -> WireClient:
    process, key = gateway
    return WireClient(process.http_url, process.ws_url, key)


class Reply:
    def __init__(
        self, deltas: list[dict[str, Any]], final: dict[str, Any], first_at: float, final_at: float
    ) -> None:
        self.deltas, self.final, self.first_at, self.final_at = deltas, final, first_at, final_at

    @property
    def text(self) -> str:
        return str(self.final["content"]["text"])


async def say_and_read(
    client: WireClient, cid: str, text: str, on_first_delta: Callable[[], object] | None = None
) -> Reply:
    """Send ``text``; collect the reply's deltas and its stored message, with when each arrived
    (``on_first_delta``: called when the first delta is in)."""
    sent = time.monotonic()
    await client.say(cid, text)
    deltas: list[dict[str, Any]] = []
    first_at = 0.0
    while True:
        event = (await client.recv())["event"]
        payload = event["event_payload"]
        if event["event_type"] == "bot_message_delta" and payload["conversation_id"] == cid:
            first_at = first_at or time.monotonic() - sent
            if on_first_delta is not None and not deltas:
                on_first_delta()
            deltas.append(payload)
        elif event["event_type"] == "bot_message" and payload["conversation_id"] == cid:
            return Reply(deltas, payload, first_at, time.monotonic() - sent)
        elif event["event_type"] == "general_error":
            raise AssertionError(f"general_error: {payload}")


async def transcript(client: WireClient, cid: str) -> list[tuple[str, str]]:
    response = await client.http.get("/api/transcript", params={"conversation_id": cid})
    assert response.status_code == 200, response.text
    return [(entry["from"], entry["content"]["text"]) for entry in response.json()["transcript"]]


async def held_turn(client: WireClient, cid: str, text: str, fake: FakeOpenAI) -> Reply:
    """A turn whose model holds the rest of its reply until the client saw the first delta: the first
    words are on screen while the model has not yet sent the others (were they buffered in the gateway,
    the turn would never end), whatever the machine's load does to the timing."""
    fake.hold = threading.Event()
    try:
        return await say_and_read(client, cid, text, on_first_delta=fake.hold.set)
    finally:
        fake.hold = None


async def test_reply_streams_as_deltas_then_lands_as_one_message(
    gateway: tuple[GatewayProcess, str], fake: FakeOpenAI
) -> None:
    async with client_for(gateway) as client:
        cid = await client.start("stream-user")
        reply = await held_turn(client, cid, "hello there my friend", fake)
        assert reply.text == "You said: hello there my friend"
        assert len(reply.deltas) == 6  # the fake streams one word per chunk
        assert "".join(d["delta"] for d in reply.deltas) == reply.text
        assert {d["message_id"] for d in reply.deltas} == {reply.final["message_id"]}
        # Streaming is worth it: the first words are on screen well before the reply is complete (the
        # fake sent the other five, CHUNK_DELAY apart, only once the client had the first).
        assert reply.first_at < reply.final_at - 3 * CHUNK_DELAY
        # the first turn also loaded the openai package
        warm = await held_turn(client, cid, "and again", fake)
        assert warm.first_at < warm.final_at - 2 * CHUNK_DELAY
        for name, r in (("first turn", reply), ("next turn", warm)):
            print(
                f"\n{name}: first delta {r.first_at * 1000:.0f} ms, full reply {r.final_at * 1000:.0f} ms",
                end="",
            )

        assert await transcript(client, cid) == [
            ("user", "hello there my friend"),
            ("bot", reply.text),
            ("user", "and again"),
            ("bot", warm.text),
        ]
        stored = (await client.http.get("/api/transcript", params={"conversation_id": cid})).json()[
            "transcript"
        ]
        assert [stored[1]["message_id"], stored[3]["message_id"]] == [
            reply.final["message_id"],
            warm.final["message_id"],
        ]


async def test_model_gets_system_prompt_and_history_in_order(
    gateway: tuple[GatewayProcess, str], fake: FakeOpenAI
) -> None:
    async with client_for(gateway) as client:
        cid = await client.start("history-user")
        first = await say_and_read(client, cid, "my name is Ada")
        second = await say_and_read(client, cid, "what is my name?")
        assert fake.requests[-1]["model"] == "fake-model" and fake.requests[-1]["stream"] is True
        assert fake.requests[-1]["messages"] == [
            SYSTEM,
            {"role": "user", "content": "my name is Ada"},
            {"role": "assistant", "content": first.text},
            {"role": "user", "content": "what is my name?"},
        ]
        assert await transcript(client, cid) == [
            ("user", "my name is Ada"),
            ("bot", first.text),
            ("user", "what is my name?"),
            ("bot", second.text),
        ]


async def test_messages_sent_back_to_back_each_get_their_own_turn(
    gateway: tuple[GatewayProcess, str], fake: FakeOpenAI
) -> None:
    async with client_for(gateway) as client:
        cid = await client.start("burst-user")
        await client.say(cid, "one")
        await client.say(cid, "two")  # stored while the model still streams the answer to "one"
        finals = [await client.expect("bot_message", lambda p: p["conversation_id"] == cid) for _ in range(2)]
        assert [f["content"]["text"] for f in finals] == ["You said: one", "You said: two"]
        first_turn, second_turn = fake.requests[-2]["messages"], fake.requests[-1]["messages"]
        assert first_turn == [SYSTEM, {"role": "user", "content": "one"}]  # not yet "two"
        assert second_turn[1:] == [  # "two" was stored before the reply to "one"; the model sees it in turn
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "You said: one"},
            {"role": "user", "content": "two"},
        ]


async def test_bot_first_asks_the_model_for_a_greeting(
    gateway: tuple[GatewayProcess, str], fake: FakeOpenAI
) -> None:
    fake.reply = lambda messages: (
        "Welcome to Example Corp!" if messages[-1]["content"] == GREETING_REQUEST else "ok"
    )
    try:
        async with client_for(gateway) as client:
            cid = await client.start("greeted-user")
            greeting = await say_and_read(client, cid, "")
            assert greeting.text == "Welcome to Example Corp!" and greeting.deltas
            assert fake.requests[-1]["messages"] == [SYSTEM, {"role": "user", "content": GREETING_REQUEST}]
            await say_and_read(client, cid, "hi")
            # The empty trigger is not something the user said: it is in neither the history nor the transcript.
            assert fake.requests[-1]["messages"] == [
                SYSTEM,
                {"role": "assistant", "content": "Welcome to Example Corp!"},
                {"role": "user", "content": "hi"},
            ]
            assert await transcript(client, cid) == [
                ("bot", "Welcome to Example Corp!"),
                ("user", "hi"),
                ("bot", "ok"),
            ]
    finally:
        fake.reply = echo


async def test_a_client_action_reaches_the_model_as_a_user_message(
    gateway: tuple[GatewayProcess, str], fake: FakeOpenAI
) -> None:
    async with client_for(gateway) as client:
        cid = await client.start("action-user")
        await client.ok("action", {"conversation_id": cid, "type": "normal", "id": "buy", "data": {"sku": 7}})
        reply = await client.expect("bot_message", lambda p: p["conversation_id"] == cid)
        assert fake.requests[-1]["messages"][-1] == {"role": "user", "content": '[action buy] {"sku": 7}'}
        assert reply["content"]["text"] == 'You said: [action buy] {"sku": 7}'


async def test_one_server_error_is_retried_unseen(
    gateway: tuple[GatewayProcess, str], fake: FakeOpenAI
) -> None:
    async with client_for(gateway) as client:
        cid = await client.start("retry-user")
        attempts = fake.attempts
        fake.fail(500)
        fake.retry_after_ms = RETRY_AFTER_MS  # openai's client waits what the API says, not its 0.5 s backoff
        try:
            reply = await say_and_read(client, cid, "still there?")
        finally:
            fake.retry_after_ms = None
        assert reply.text == "You said: still there?"
        assert fake.attempts - attempts == 2


async def test_a_failing_model_api_is_a_general_error_and_the_next_message_works(
    gateway: tuple[GatewayProcess, str], fake: FakeOpenAI
) -> None:
    async with client_for(gateway) as client:
        cid = await client.start("failure-user")
        fake.fail(500, times=3)  # the first try and both retries
        # each 500 says "retry after 20 ms", which openai's client honours instead of its 0.5 s, 1 s backoff
        fake.retry_after_ms = RETRY_AFTER_MS
        attempts = fake.attempts
        started = time.monotonic()
        try:
            await client.say(cid, "are you ok?")
            error = await client.expect("general_error", lambda p: p["conversation_id"] == cid)
        finally:
            fake.retry_after_ms = None
        print(
            f"\n500 x3 -> general_error after {time.monotonic() - started:.2f} s (openai's retries)", end=""
        )
        assert fake.attempts - attempts == 3  # the first try and both retries
        assert error["error_code"] == 502 and "answered 500" in error["error_desc"]

        reply = await say_and_read(client, cid, "and now?")
        assert reply.text == "You said: and now?"
        assert await transcript(client, cid) == [
            ("user", "are you ok?"),
            ("user", "and now?"),
            ("bot", reply.text),
        ]


async def test_a_stream_cut_mid_reply_is_a_general_error_after_the_partial_text(
    gateway: tuple[GatewayProcess, str], fake: FakeOpenAI
) -> None:
    async with client_for(gateway) as client:
        cid = await client.start("cut-user")
        fake.cut(after_words=2)
        await client.say(cid, "tell me everything")
        partial = [
            await client.expect("bot_message_delta", lambda p: p["conversation_id"] == cid) for _ in range(2)
        ]
        assert "".join(p["delta"] for p in partial) == "You said:"
        error = await client.expect("general_error", lambda p: p["conversation_id"] == cid)
        assert (
            error["error_code"] == 502
            and "lost the connection to the model API mid-reply" in error["error_desc"]
        )
        reply = await say_and_read(client, cid, "try again")
        assert reply.text == "You said: try again"
        # The partial reply was never stored: the transcript is what was said in full.
        assert await transcript(client, cid) == [
            ("user", "tell me everything"),
            ("user", "try again"),
            ("bot", reply.text),
        ]


async def test_a_refused_key_is_a_general_error_that_does_not_show_the_key(
    gateway: tuple[GatewayProcess, str], fake: FakeOpenAI
) -> None:
    process, _ = gateway
    async with client_for(gateway) as client:
        cid = await client.start("key-user")
        fake.api_key = "sk-rotated-" + os.urandom(8).hex()  # the provider revoked the gateway's key
        try:
            await client.say(cid, "hello?")
            error = await client.expect("general_error", lambda p: p["conversation_id"] == cid)
        finally:
            fake.api_key = API_KEY
        assert error["error_code"] == 502 and "API key refused" in error["error_desc"]
        assert API_KEY not in str(error)
        reply = await say_and_read(client, cid, "hello again")
        assert reply.text == "You said: hello again"
    logs = process.logs()
    assert "answered 401" in logs  # the operator is told ...
    assert API_KEY not in logs  # ... and the key (which the fake's 401 body quoted) is nowhere in the logs


async def warm_up(client: WireClient, cid: str, tries: int = 5) -> None:
    """One answered turn: the first imports openai in the gateway, which may take longer than a short timeout."""
    for _ in range(tries):
        await client.say(cid, "warm up")
        while True:
            event = (await client.recv(timeout=20))["event"]
            if event["event_payload"].get("conversation_id") != cid:
                continue
            if event["event_type"] == "bot_message":
                return
            if event["event_type"] == "general_error":
                break
    raise AssertionError(f"no turn was answered in {tries} tries")


async def test_a_model_slower_than_the_agent_timeout_is_a_504(
    quick_gateway: tuple[GatewayProcess, str], fake: FakeOpenAI
) -> None:
    async with client_for(quick_gateway) as client:
        cid = await client.start("slow-user")
        await warm_up(client, cid)
        fake.stall(3)
        await client.say(cid, "take your time")
        error = await client.expect("general_error", lambda p: p["conversation_id"] == cid, timeout=20)
        assert error["error_code"] == 504 and "1 s" in error["error_desc"]
        reply = await say_and_read(client, cid, "quicker now?")
        assert reply.text == "You said: quicker now?"


# The agent in-process against a real store: the non-streaming call, history limits, error mapping.


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    store = store_from_url(f"sqlite:///{tmp_path / 'agent.db'}")
    await store.open()
    yield store
    await store.close()


def settings(fake: FakeOpenAI, **overrides: Any) -> OpenAISettings:
    return OpenAISettings(**{"api_key": API_KEY, "base_url": fake.base_url, **overrides})


def said(sender: str, text: str, event_type: str | None = None) -> NewEvent:
    kind = (
        event_type
        or {"user": "user_message", "bot": "bot_message", "human_agent": "livechat_message"}[sender]
    )
    return NewEvent(
        kind, {"content": {"type": "text", "text": text}}, sender=sender, message_id=os.urandom(6).hex()
    )


async def test_history_is_the_recent_transcript_with_human_replies_as_assistant(
    store: Any, fake: FakeOpenAI
) -> None:
    channel = await store.create_channel_with_key("c", hash_key(new_key()), "cck_test")
    await store.create_conversation(channel.id, "conv-1", "u1", {}, {}, {})
    await store.append_events(
        channel.id,
        "conv-1",
        [
            said("user", ""),  # the bot-first trigger
            said("bot", "Hello!"),
            said("user", "I need a refund"),
            said("bot", "Let me find a human."),
            said("system", "Alice joined", "system_message"),
            said("human_agent", "Alice here, refund done."),
            said("user", "thanks"),  # this turn's message
            said("user", "bye"),  # sent right after: its own, later turn
        ],
    )
    agent = OpenAIAgent("fake-model", settings(fake, history=3), store=store, channel_id=channel.id)
    try:
        response = await agent(ChatRequest(session_id="conv-1", user_input="thanks"))
    finally:
        await agent.aclose()
    assert fake.requests[-1].get("stream") is None  # __call__ does not stream
    assert fake.requests[-1]["messages"] == [
        {"role": "user", "content": "I need a refund"},
        {"role": "assistant", "content": "Let me find a human."},
        {"role": "assistant", "content": "Alice here, refund done."},
        {"role": "user", "content": "thanks"},
    ]
    assert response.response == [{"type": "text", "text": "You said: thanks"}]
    assert response.session_id == "conv-1"


async def test_a_read_timeout_is_504_and_an_unreachable_api_is_502(fake: FakeOpenAI) -> None:
    slow = OpenAIAgent("fake-model", settings(fake, timeout=0.3, max_retries=0))
    fake.stall(2)
    try:
        with pytest.raises(AgentError) as timed_out:
            await slow(ChatRequest(session_id="c", user_input="hi"))
    finally:
        await slow.aclose()
    assert timed_out.value.error_code == 504 and "in time" in timed_out.value.error_desc

    free_port = FakeOpenAI(API_KEY).start()
    free_port.stop()  # nothing listens there any more
    gone = OpenAIAgent("fake-model", settings(fake, base_url=free_port.base_url, max_retries=0))
    try:
        with pytest.raises(AgentError) as unreachable:
            await gone.stream(ChatRequest(session_id="c", user_input="hi"), lambda delta: None)
    finally:
        await gone.aclose()
    assert unreachable.value.error_code == 502 and "cannot reach" in unreachable.value.error_desc


async def test_an_unknown_model_is_a_clear_502(fake: FakeOpenAI) -> None:
    agent = OpenAIAgent("no-such-model", settings(fake, max_retries=0))
    try:
        with pytest.raises(AgentError) as failed:
            await agent.stream(ChatRequest(session_id="c", user_input="hi"), lambda delta: None)
    finally:
        await agent.aclose()
    assert failed.value.error_code == 502
    assert (
        failed.value.error_desc == "openai:no-such-model: the model API answered 404 (unknown model or URL)"
    )


def test_settings_come_from_the_environment() -> None:
    env = {
        "CAPTIVATE_AGENT_BASE_URL": "http://127.0.0.1:11434/v1",
        "OPENAI_API_KEY": "sk-fallback",
        "CAPTIVATE_AGENT_SYSTEM_PROMPT": "Be brief.",
        "CAPTIVATE_AGENT_HISTORY": "6",
    }
    loaded = OpenAISettings.from_env(env)
    assert (loaded.base_url, loaded.api_key, loaded.system_prompt, loaded.history) == (
        "http://127.0.0.1:11434/v1",
        "sk-fallback",
        "Be brief.",
        6,
    )
    assert "sk-fallback" not in repr(loaded)
    assert OpenAISettings.from_env({**env, "CAPTIVATE_AGENT_API_KEY": "sk-own"}).api_key == "sk-own"
    with pytest.raises(AgentError, match="no API key: set CAPTIVATE_AGENT_API_KEY or OPENAI_API_KEY"):
        OpenAISettings.from_env({})
    local = OpenAISettings.from_env({"CAPTIVATE_AGENT_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert (local.api_key, local.history, local.max_retries) == ("none", 20, 2)  # a local server needs no key
    with pytest.raises(AgentError, match="CAPTIVATE_AGENT_HISTORY must be a whole number"):
        OpenAISettings.from_env({**env, "CAPTIVATE_AGENT_HISTORY": "lots"})


def test_the_gateway_runs_without_the_openai_package() -> None:
    script = (
        "import sys; sys.modules['openai'] = None\n"  # as if it were not installed
        "import captivate_chat_api.server.app\n"
        "from captivate_chat_api.server.agents import AgentError, agent_from_spec\n"
        "assert type(agent_from_spec('demo')).__name__ == 'DemoAgent'\n"
        "try:\n"
        "    agent_from_spec('openai:gpt-4o-mini')\n"
        "except AgentError as exc:\n"
        "    print(exc.error_desc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip()
        == "the openai agent needs the openai package: pip install 'captivate-chat-api[openai]'"
    )
