"""HTTP routes: the client-event POST, transcripts, the 413 message link (health: routes/ops.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask
from starlette.routing import Route

from ...errors import MessageNotFound
from ...protocol import ProtocolError, parse_envelope
from ..auth import single_credential
from ..fastjson import dumps
from ..gateway import Gateway
from ..handlers import Request as ClientRequest
from ..store import Channel

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "description": "Refused: `{error_code, error_desc}`, error_code being the HTTP status",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error_code", "error_desc"],
                    "properties": {"error_code": {"type": "integer"}, "error_desc": {"type": "string"}},
                }
            }
        },
    }
}
"""Every route's errors, for the OpenAPI description (it replaces FastAPI's 422, which is never sent)."""


def json_body(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """``openapi_extra`` describing a JSON object body, for routes that read their body themselves."""
    schema = {"type": "object", "properties": properties, "required": list(required)}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


router = APIRouter(responses=ERROR_RESPONSES)
MESSAGE_PATH = "/api/custom-channel/sockets/message"

_ENVELOPE_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["event"],
                    "properties": {
                        "action": {"type": "string", "example": "sendMessage"},
                        "event": {
                            "type": "object",
                            "required": ["event_type"],
                            "properties": {
                                "event_type": {"type": "string"},
                                "event_payload": {"type": "object"},
                                "socket_id": {"type": ["string", "null"]},
                            },
                        },
                    },
                }
            }
        },
    }
}


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def authenticate(request: Request) -> tuple[Channel, str]:
    return await channel_of(gateway_of(request), request.headers.getlist("x-api-key"))


async def channel_of(gateway: Gateway, keys: list[str]) -> tuple[Channel, str]:
    """The channel of the request's ``x-api-key`` values (one, or several equal ones); 400 / 401 else."""
    key = single_credential(keys, "x-api-key header")
    channel = await gateway.auth.channel(key)
    if channel is None or key is None:
        raise ProtocolError(401, "missing or invalid x-api-key")
    return channel, key


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(413, f"request body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def post_client_event(request: Request) -> Response:
    """Every client event of the npm client 7.0.0 (PROTOCOL.md section 4); the body is the direct reply.
    (Under ``serve`` the POST is served below ASGI by :class:`.fastpath.HotPost`, with the same
    :func:`channel_of` and :func:`client_event`.)"""
    gateway = gateway_of(request)
    channel, key = await channel_of(gateway, request.headers.getlist("x-api-key"))
    body = await read_body(request, gateway.settings.max_body_bytes)
    content, after = await client_event(gateway, channel, key, body)
    background = None
    if after is not None:
        run = after

        async def run_after() -> None:  # async, so Starlette runs it on the loop rather than in a thread
            run()

        background = BackgroundTask(run_after)
    return Response(content, media_type="application/json", background=background)


async def client_event(
    gateway: Gateway, channel: Channel, key: str, body: bytes
) -> tuple[bytes, Callable[[], None] | None]:
    """The client-event POST without its transport, once its key is known: the body in, the reply's JSON
    and what to run once it is sent (the agent's turn) out; refusals raise."""
    envelope = parse_envelope(body)
    connection = gateway.relay.find_client(envelope.socket_id, channel.id)
    gateway.limits.check(channel.id, connection.socket_id if connection else None)
    async with gateway.limits.admission.slot(channel.id):  # fair across tenants (limits.Admission)
        reply = await gateway.handlers.handle(
            ClientRequest(channel, key, envelope, connection, via_websocket=False)
        )
    if connection is not None and (frame := reply.socket_frame(envelope.request_id)) is not None:
        connection.send(frame)
    return dumps(reply.body).encode(), reply.after


@router.get("/api/transcript")
async def get_transcript(request: Request, conversation_id: str | None = None) -> dict[str, Any]:
    """``{transcript: [...]}``, oldest first."""
    channel, _ = await authenticate(request)
    if not conversation_id:
        raise ProtocolError(400, "query parameter conversation_id is required")
    return {"transcript": await gateway_of(request).handlers.transcript(channel, conversation_id)}


@router.get("/api/custom-channel/messages/{conversation_id}/{message_id}")
async def get_large_message(request: Request, conversation_id: str, message_id: str) -> dict[str, Any]:
    """The 413 fallback: a message too large for a WebSocket frame, as ``{botMessage: {content}}``."""
    channel, _ = await authenticate(request)
    for entry in await gateway_of(request).handlers.transcript(channel, conversation_id):
        if entry["message_id"] == message_id:
            return {"botMessage": entry}
    raise MessageNotFound(conversation_id)


def hot_routes() -> list[Route]:
    """The client-event POST, mounted as a bare Starlette route: it validates its own input, and skipping
    FastAPI's per-request dependency machinery saves ~0.5 ms of CPU per message (bench/roundtrip.py).
    It is described in the OpenAPI document by :func:`describe_hot_routes`."""
    return [Route(MESSAGE_PATH, post_client_event, methods=["POST"])]


def describe_hot_routes(schema: dict[str, Any]) -> dict[str, Any]:
    schema.setdefault("paths", {})[MESSAGE_PATH] = {
        "post": {
            "summary": "Send a client event",
            "description": "Every client event of the npm client 7.0.0 (PROTOCOL.md section 4); the body is the reply.",
            "operationId": "post_client_event",
            "parameters": [
                {"name": "x-api-key", "in": "header", "required": True, "schema": {"type": "string"}}
            ],
            **_ENVELOPE_SCHEMA,
            "responses": {
                "200": {
                    "description": "The direct reply",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **ERROR_RESPONSES,  # type: ignore[dict-item]  # 400 bad input, 401 bad key, 404 unknown conversation, 413 body too large
            },
        }
    }
    return schema
