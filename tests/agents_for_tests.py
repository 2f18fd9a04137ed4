"""Agents the gateway loads with ``python:agents_for_tests:NAME`` in tests (tests/ is on its PYTHONPATH)."""

from __future__ import annotations

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
