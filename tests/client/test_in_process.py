"""The SDK against a gateway app in this process (``InProcessTransport``): the real app and store, no
sockets. Both message paths (HTTP as npm 7.0.0, WebSocket frames as 1.x)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from captivate_chat_api import (
    AuthenticationError,
    BotMessage,
    CaptivateChatAPI,
    ConnectionState,
    NotFoundError,
)
from captivate_chat_api.client.transport import InProcessTransport
from captivate_chat_api.testing import InProcessGateway, ScriptedAgent, in_process_gateway


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


@pytest.fixture
async def gateway() -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(ScriptedAgent()) as gateway:
        yield gateway


@pytest.fixture(params=["http", "websocket"])
async def api(gateway: InProcessGateway, request: pytest.FixtureRequest) -> AsyncIterator[CaptivateChatAPI]:
    async with gateway.client(request.param) as client:
        assert client.transport == request.param
        yield client


async def test_greeting_message_reply_and_transcript(
    gateway: InProcessGateway, api: CaptivateChatAPI
) -> None:
    gateway.agent.reply("Welcome!")
    gateway.agent.reply_with(lambda request: f"heard {request.user_input}")
    conversation = await api.create_conversation("user-1", metadata={"plan": "pro"})
    stream = conversation.events()
    greeting = await stream.next(timeout=10)
    assert isinstance(greeting, BotMessage) and greeting.content == {"type": "text", "text": "Welcome!"}
    sent = await conversation.send_message("hi")
    assert sent.seq is not None and not sent.duplicate
    texts = []
    while len(texts) < 1:
        event = await stream.next(timeout=10)
        if isinstance(event, BotMessage):
            texts.append(event.content["text"])
    assert texts == ["heard hi"]
    assert conversation.last_seq == event.seq
    assert await conversation.get_metadata() == {"plan": "pro"}
    transcript = await conversation.get_transcript()
    assert [entry.sender for entry in transcript] == ["bot", "user", "bot"]
    assert gateway.agent.inputs == ["", "hi"]


async def test_resume_after_a_stored_seq_and_delete(gateway: InProcessGateway, api: CaptivateChatAPI) -> None:
    conversation = await api.create_conversation("user-2", mode="user-first")
    replies: list[str] = []
    conversation.on_message(lambda message, kind: replies.append(message["text"]))
    await conversation.send_message("one")
    await until(lambda: len(replies) == 1)
    stored = conversation.last_seq
    await conversation.send_message("two")
    await until(lambda: len(replies) == 2)
    async with gateway.client(api.transport) as later:
        again = await later.get_conversation(conversation.conversation_id, after_seq=stored)
        replayed = [event.seq for event in [await again.events().next(timeout=10)]]
        assert replayed[0] == stored + 1
    await conversation.delete()
    assert conversation.closed
    with pytest.raises(NotFoundError):
        await conversation.get_transcript()


async def test_a_refused_key_and_a_closed_client(gateway: InProcessGateway) -> None:
    with pytest.raises(AuthenticationError):
        await gateway.client(api_key="cc_live_wrong").connect()
    api = gateway.client()
    await api.connect()
    await api.close()
    assert api.state is ConnectionState.CLOSED


def test_the_transport_checks_its_message_path() -> None:
    with pytest.raises(ValueError, match="messages"):
        InProcessTransport(object(), messages="carrier pigeon")  # type: ignore[arg-type]
