"""Test your channel offline: the pytest fixtures `captivate_gateway` (an in-process gateway with a
scriptable agent) and `captivate_api` (a client connected to it). Needs the server extra and
pytest-asyncio. Run it with `pytest examples/testing_kit.py`, or as a program."""

import sys

if __name__ == "__main__":  # as a program: pytest in a fresh interpreter, on this file (first, so that this
    import subprocess  # process does not import what that one imports anyway)

    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]))

import pytest

from captivate_chat_api import BotMessage


@pytest.mark.asyncio
async def test_my_channel(captivate_gateway, captivate_api):
    captivate_gateway.agent.reply("Welcome to ACME!")  # the greeting turn
    captivate_gateway.agent.reply_with(lambda request: f"ACME heard: {request.user_input}")
    conversation = await captivate_api.create_conversation("customer-1")
    await conversation.send_message("where is my order?")
    texts, stream = [], conversation.events()
    while len(texts) < 2:
        event = await stream.next(timeout=10)
        if isinstance(event, BotMessage):
            texts.append(event.content["text"])
    assert texts == ["Welcome to ACME!", "ACME heard: where is my order?"]
    assert captivate_gateway.agent.inputs == ["", "where is my order?"]
