"""The test kit (``captivate_chat_api.testing``) as our users use it: the pytest plugin in a user's test
run (through pytester, in a subprocess), and ``run_gateway`` directly."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from captivate_chat_api import (
    Action,
    AuthenticationError,
    BotMessage,
    CaptivateChatAPI,
    ChatConnectionError,
    EventStream,
    GeneralError,
    PlatformEvent,
)
from captivate_chat_api.protocol import AgentResponse, ChatRequest
from captivate_chat_api.server.keys import generate_key
from captivate_chat_api.testing import LocalGateway, ScriptedAgent, run_gateway

pytest_plugins = ["pytester"]

WAIT = 10.0
# schemathesis and hypothesis are installed for this suite's fuzz and property tests, not by a user of the
# kit: their pytest plugins would add ~0.7 and ~0.25 CPU-s of imports to each run
USER_ARGS = ("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest")

USER_INI = """
[pytest]
filterwarnings = error
asyncio_default_fixture_loop_scope = function
"""

USER_TESTS = """
import pytest
from captivate_chat_api import BotMessage

pytestmark = pytest.mark.asyncio


async def bot_texts(conversation, count):
    stream, texts = conversation.events(), []
    while len(texts) < count:
        event = await stream.next(timeout=10)
        if isinstance(event, BotMessage):
            texts.append(event.content["text"])
    return texts


async def test_my_channel_greets_and_answers(captivate_gateway, captivate_api):
    agent = captivate_gateway.agent
    agent.reply("Welcome to ACME!")

    @agent.reply_with
    def answer(request):
        return f"ACME heard: {request.user_input}"

    conversation = await captivate_api.create_conversation("customer-1", metadata={"plan": "gold"})
    await conversation.send_message("where is my order?")
    assert await bot_texts(conversation, 2) == ["Welcome to ACME!", "ACME heard: where is my order?"]
    assert agent.inputs == ["", "where is my order?"]
    assert agent.requests[-1].metadata.channel.custom == {"plan": "gold"}


async def test_unscripted_turns_get_the_demo_agent(captivate_api):
    conversation = await captivate_api.create_conversation("customer-2", mode="user-first")
    await conversation.send_message("hi")
    assert await bot_texts(conversation, 1) == ["You said: hi"]


async def test_a_wrong_expectation_fails(captivate_gateway, captivate_api):
    captivate_gateway.agent.reply("Bonjour")
    conversation = await captivate_api.create_conversation("customer-3")
    assert await bot_texts(conversation, 1) == ["Hello"]
"""


def test_the_plugin_is_registered_for_pytest() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("captivate_chat") == "captivate_chat_api.testing"


def test_a_user_test_run_with_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_my_channel=USER_TESTS)
    result = pytester.runpytest_subprocess(*USER_ARGS)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_a_wrong_expectation_fails*", "*'Bonjour'*"])
    result.stdout.no_fnmatch_line("*Warning*")


def test_without_the_server_extra_only_the_fixture_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a client-only install: the gateway's web framework cannot be imported
    blocker = pytester.mkdir("no_server_extra") / "fastapi"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('fastapi is not installed')\n")
    monkeypatch.setenv("PYTHONPATH", str(blocker.parent))
    pytester.makeini(USER_INI)
    pytester.makepyfile(
        test_client_only=textwrap.dedent(
            """
            def test_unrelated():
                assert True

            def test_uses_the_gateway(captivate_gateway):
                pass
            """
        )
    )
    result = pytester.runpytest_subprocess(*USER_ARGS)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ImportError: the Captivate Chat test kit needs the server extra*"])


async def collect(stream: EventStream, count: int) -> list[PlatformEvent]:
    return [await stream.next(WAIT) for _ in range(count)]


def test_run_gateway_scripts_actions_failures_and_extra_keys() -> None:
    agent = ScriptedAgent()
    extra_key = generate_key()

    async def scenario(base_url: str, key: str) -> None:
        async with CaptivateChatAPI(key, base_url=base_url) as api:
            conversation = await api.create_conversation("u1", mode="user-first")
            stream = conversation.events()
            agent.reply("Pick a size", actions={"show_sizes": {"sizes": ["S", "M"]}})
            agent.fail("inventory is down", 503)
            agent.reply(AgentResponse(response=[{"type": "text", "text": "canned"}]))
            for text in ("one", "two", "three"):
                await conversation.send_message(text)
            events = await collect(stream, 7)
            bots = [e.content["text"] for e in events if isinstance(e, BotMessage)]
            assert bots == ["Pick a size", "canned"]
            action = next(e for e in events if isinstance(e, Action))
            assert action.actions == [{"id": "show_sizes", "data": {"sizes": ["S", "M"]}}]
            error = next(e for e in events if isinstance(e, GeneralError))
            assert (error.error_code, error.error_desc) == (503, "inventory is down")
            assert [r.session_id for r in agent.requests] == [conversation.conversation_id] * 3
            assert agent.pending == 0

    with run_gateway(agent, api_keys=[extra_key]) as gateway:
        assert gateway.agent is agent
        assert gateway.base_url.startswith("http://127.0.0.1:") and gateway.ws_url.endswith("/dev")
        asyncio.run(scenario(gateway.base_url, extra_key))  # an extra key is its own channel
        asyncio.run(scenario_reply_with(gateway.base_url, gateway.api_key, agent))
        database = Path(gateway.database.removeprefix("sqlite:///"))
        assert database.exists()
        base_url, key = gateway.base_url, gateway.api_key
    assert not database.parent.exists()  # the temporary database is removed

    async def refused() -> None:
        async with CaptivateChatAPI(key, base_url=base_url, connect_timeout=2):
            pass

    with pytest.raises(ChatConnectionError):  # the server is gone
        asyncio.run(refused())


async def scenario_reply_with(base_url: str, key: str, agent: ScriptedAgent) -> None:
    async def answer(request: ChatRequest) -> str:
        await asyncio.sleep(0)
        return f"async answer to {request.user_input}"

    agent.reply_with(answer)
    async with CaptivateChatAPI(key, base_url=base_url) as api:
        conversation = await api.create_conversation("u2", mode="user-first")
        stream = conversation.events()
        await conversation.send_message("ping")
        events = await collect(stream, 2)
        assert isinstance(events[1], BotMessage) and events[1].content["text"] == "async answer to ping"


def test_run_gateway_keeps_a_given_database(tmp_path: Path) -> None:
    key = generate_key()
    database = tmp_path / "kept.db"

    async def start(base_url: str) -> str:
        async with CaptivateChatAPI(key, base_url=base_url) as api:
            conversation = await api.create_conversation("keeper", mode="user-first")
            stream = conversation.events()
            await conversation.send_message("remember me")
            await collect(stream, 2)
            return conversation.conversation_id

    async def transcript(base_url: str, conversation_id: str) -> list[str]:
        async with CaptivateChatAPI(key, base_url=base_url) as api:
            conversation = await api.get_conversation(conversation_id)
            return [e.content["text"] for e in await conversation.get_transcript()]

    with run_gateway(api_keys=[key], database=database) as gateway:
        conversation_id = asyncio.run(start(gateway.base_url))
    with run_gateway(api_keys=[key], database=f"sqlite:///{database}") as gateway:
        assert asyncio.run(transcript(gateway.base_url, conversation_id)) == [
            "remember me",
            "You said: remember me",
        ]


def test_the_generated_key_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def connect(base_url: str, key: str) -> None:
        async with CaptivateChatAPI(key, base_url=base_url) as api:
            await api.create_conversation("quiet", mode="user-first")

    with run_gateway() as gateway:
        asyncio.run(connect(gateway.base_url, gateway.api_key))
    # the gateway's side only: the websockets library logs its own request line at DEBUG on the client
    server_side = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client")]
    assert any("WebSocket /dev?" in line for line in server_side)  # the request line is logged ...
    assert not [line for line in server_side if gateway.api_key in line]  # ... without its key


async def test_the_fixtures_in_this_suite(
    captivate_gateway: LocalGateway, captivate_api: CaptivateChatAPI
) -> None:
    captivate_gateway.agent.reply("fixture greeting")
    conversation = await captivate_api.create_conversation("fixture-user")
    (greeting,) = await collect(conversation.events(), 1)  # the bot-first trigger's echo is not shown
    assert isinstance(greeting, BotMessage) and greeting.content["text"] == "fixture greeting"


def test_a_wrong_key_is_refused_by_the_kit_gateway(captivate_gateway: LocalGateway) -> None:
    async def connect() -> None:
        async with CaptivateChatAPI(generate_key(), base_url=captivate_gateway.base_url):
            pass

    with pytest.raises(AuthenticationError):
        asyncio.run(connect())
