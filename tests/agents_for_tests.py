"""Agents the gateway loads with ``python:agents_for_tests:NAME`` in tests (tests/ is on its PYTHONPATH)."""

from __future__ import annotations

import asyncio
import os

from captivate_chat_api.protocol import AgentResponse, ChatRequest


async def reporter(request: ChatRequest) -> AgentResponse:
    """Says what it was asked, including ``hasLivechat``, so a test can see the ChatRequest."""
    action = request.incoming_action[0].id if request.incoming_action else None
    text = f"input={request.user_input!r} hasLivechat={request.hasLivechat} action={action}"
    return AgentResponse(response=[{"type": "text", "text": text}], session_id=request.session_id)


async def failing(request: ChatRequest) -> AgentResponse:
    raise RuntimeError("boom")


def returns_dict(request: ChatRequest) -> dict:  # a plain function returning the response format
    return {"response": [{"type": "text", "text": "from a dict"}], "session_id": request.session_id}


async def slow_ticketer(request: ChatRequest) -> AgentResponse:
    """Answers after ``SLOW_AGENT_SECONDS`` (default 1) with a message and a metadata change (a ticket and
    a title): a turn a human can take over while it runs."""
    await asyncio.sleep(float(os.environ.get("SLOW_AGENT_SECONDS", "1.0")))
    text = request.user_input or ""
    custom = {"ticket": text, "conversation_title": f"about {text}"}
    return AgentResponse.model_validate(
        {
            "session_id": request.session_id,
            "response": [{"type": "text", "text": f"late: {text}"}],
            "metadata": {"internal": {"channelMetadata": {"custom": custom}}},
        }
    )
