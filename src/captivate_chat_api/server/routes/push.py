"""Async push: an AI agent answers later (the ``captivate-ai-api`` library's ``async_send_message``).

``POST /api/channel/v2/sendMessage`` takes a response body; the deprecated v1
``POST /api/channel/sendMessage`` takes ``{idChat, channel, message: {messages, actions}}``. Both are
authenticated with a ``push`` agent token in ``x-agent-token`` or the ``token`` query parameter (the
library sends no header, so its URL carries the token).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from ...errors import ConversationNotFound
from ...protocol import AgentResponse, ProtocolError, decode_json
from ..gateway import Gateway
from ..store import Channel
from .agent_api import agent_token_of
from .http import ERROR_RESPONSES, gateway_of, json_body, read_body

router = APIRouter(responses=ERROR_RESPONSES)


async def push_channel(request: Request) -> Channel:
    token = agent_token_of(request)
    found = await gateway_of(request).auth.agent_token(token, "push")
    if found is None:
        raise ProtocolError(401, "missing or invalid agent token")
    return found[0]


async def deliver(gateway: Gateway, channel: Channel, response: AgentResponse) -> dict[str, Any]:
    if not response.session_id:
        raise ProtocolError(400, "session_id is required")
    conversation = await gateway.store.get_conversation(channel.id, response.session_id)
    if conversation is None:
        raise ConversationNotFound(response.session_id)
    if not await gateway.runner.apply(channel, conversation, response):
        raise ProtocolError(
            409, "a human agent has this conversation; the AI reply was not delivered", conversation.id
        )
    return {"status": "success", "session_id": conversation.id}


async def read_json(request: Request, gateway: Gateway) -> Any:
    return decode_json(await read_body(request, gateway.settings.max_body_bytes))


@router.post(
    "/api/channel/v2/sendMessage",
    openapi_extra=json_body(
        {
            "session_id": {"type": "string"},
            "response": {"type": "array"},
            "outgoing_action": {"type": ["array", "null"]},
            "metadata": {"type": ["object", "null"]},
            "hasLivechat": {"type": "boolean"},
        },
        ("session_id",),
    ),
)
async def push_v2(request: Request) -> dict[str, Any]:
    """An agent's response, delivered to the conversation ``session_id``."""
    gateway = gateway_of(request)
    channel = await push_channel(request)
    try:
        response = AgentResponse.model_validate(await read_json(request, gateway))
    except ValidationError as exc:
        raise ProtocolError(
            400, f"invalid response body: {exc.errors(include_url=False)[0]['msg']}"
        ) from None
    return await deliver(gateway, channel, response)


@router.post(
    "/api/channel/sendMessage",
    deprecated=True,
    openapi_extra=json_body(
        {
            "idChat": {"type": "string"},
            "channel": {"type": "string"},
            "message": {
                "type": "object",
                "properties": {"messages": {"type": "array"}, "actions": {"type": "array"}},
            },
        },
        ("idChat",),
    ),
)
async def push_v1(request: Request) -> dict[str, Any]:
    """Deprecated v1 push: ``{idChat, channel, message: {messages, actions}}``."""
    gateway = gateway_of(request)
    channel = await push_channel(request)
    body = await read_json(request, gateway)
    if not isinstance(body, dict) or not isinstance(body.get("idChat"), str):
        raise ProtocolError(400, "idChat is required")
    message = body.get("message") or {}
    if not isinstance(message, dict):
        raise ProtocolError(400, "message must be an object")
    try:
        response = AgentResponse.model_validate(
            {
                "session_id": body["idChat"],
                "response": message.get("messages") or [],
                "outgoing_action": message.get("actions") or None,
            }
        )
    except ValidationError as exc:
        raise ProtocolError(400, f"invalid message: {exc.errors(include_url=False)[0]['msg']}") from None
    return await deliver(gateway, channel, response)
