"""The human agents' API (live chat): REST to act, a WebSocket to follow.

Authenticated with a ``human`` agent token (``x-agent-token`` header or ``token`` query), scoped to one
channel: a token never sees another channel's conversations.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse

from ...errors import ConversationNotFound
from ...protocol import AgentConnected, ProtocolError, decode_json, normalize_content
from ..handlers import is_transcript_message, transcript_entry
from ..handoff import HandoffConflict
from ..hub import Connection
from ..keys import hash_key
from ..store import AgentTokenInfo, Channel, ConversationRecord
from .http import ERROR_RESPONSES, gateway_of, json_body, read_body

router = APIRouter(prefix="/api/agent", tags=["live chat"], responses=ERROR_RESPONSES)
STATES = ("waiting_human", "human")


async def human(request: Request) -> tuple[Channel, AgentTokenInfo]:
    token = request.headers.get("x-agent-token") or request.query_params.get("token")
    found = await gateway_of(request).auth.agent_token(token, "human")
    if found is None:
        raise ProtocolError(401, "missing or invalid agent token")
    return found


async def body_of(request: Request) -> dict[str, Any]:
    raw = await read_body(request, gateway_of(request).settings.max_body_bytes)
    if not raw.strip():
        return {}
    data = decode_json(raw)
    if not isinstance(data, dict):
        raise ProtocolError(400, "body must be a JSON object")
    return data


def name_of(token: AgentTokenInfo, body: dict[str, Any]) -> str:
    name = body.get("agent_name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 100):
        raise ProtocolError(400, "agent_name must be a string of 1 to 100 characters")
    return name or token.label or token.id


def summary(record: ConversationRecord) -> dict[str, Any]:
    return {
        "conversation_id": record.id,
        "user_id": record.user_id,
        "user_basic_info": record.user_basic_info,
        "state": record.handoff,
        "human_agent": record.human_agent,
        "metadata": record.metadata,
        "updated_at": record.updated_at,
        "last_seq": record.last_seq,
    }


def bind_socket(request: Request, channel: Channel, body: dict[str, Any], conversation_id: str) -> None:
    connection = gateway_of(request).hub.find(body.get("socket_id") if isinstance(body.get("socket_id"), str) else None, channel.id)
    if connection is not None and connection.role == "human":
        gateway_of(request).hub.bind(conversation_id, connection)


async def run(coro: Any, conversation_id: str) -> ConversationRecord:
    try:
        result: ConversationRecord = await coro
        return result
    except LookupError:
        raise ConversationNotFound(conversation_id) from None
    except HandoffConflict as exc:
        raise ProtocolError(409, str(exc), conversation_id) from None


@router.get("/conversations")
async def list_conversations(request: Request, state: str | None = None) -> dict[str, Any]:
    """Conversations waiting for a human or live with one (``state=waiting_human|human``; default both)."""
    channel, _ = await human(request)
    states = [s for s in (state.split(",") if state else STATES) if s]
    if not set(states) <= set(STATES):
        raise ProtocolError(400, f"state must be among {', '.join(STATES)}")
    records = await gateway_of(request).store.list_handoff(channel.id, states)
    return {"conversations": [summary(r) for r in records]}


@router.get("/conversations/{conversation_id}")
async def get_conversation(request: Request, conversation_id: str) -> dict[str, Any]:
    """A conversation with its transcript and metadata (public and private: agents may see both).
    ``?socket_id=`` (the console's WebSocket) follows it live from then on; bound before the read, so no
    event falls between the transcript and the live feed (the seq tells repeats apart)."""
    channel, _ = await human(request)
    store = gateway_of(request).store
    record = await store.get_conversation(channel.id, conversation_id)
    if record is None:
        raise ConversationNotFound(conversation_id)
    bind_socket(request, channel, dict(request.query_params), conversation_id)
    transcript = [transcript_entry(e) for e in await store.messages(conversation_id) if is_transcript_message(e)]
    return {**summary(record), "private_metadata": record.private_metadata, "transcript": transcript}


@router.post("/conversations/{conversation_id}/escalate")
async def escalate(request: Request, conversation_id: str) -> dict[str, Any]:
    """Hand an AI conversation to the humans' queue (as the agent's ``escalateToHuman`` does)."""
    channel, _ = await human(request)
    body = await body_of(request)
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    livechat = gateway_of(request).livechat
    return summary(await run(livechat.apply(channel.id, conversation_id, "escalate", reason=reason), conversation_id))


@router.post("/conversations/{conversation_id}/take")
async def take(request: Request, conversation_id: str) -> dict[str, Any]:
    """Take a waiting (or AI) conversation; 409 if another human has it."""
    channel, token = await human(request)
    body = await body_of(request)
    livechat = gateway_of(request).livechat
    record = await run(livechat.apply(channel.id, conversation_id, "take", human=name_of(token, body)), conversation_id)
    bind_socket(request, channel, body, conversation_id)
    return summary(record)


@router.post(
    "/conversations/{conversation_id}/messages",
    openapi_extra=json_body(
        {"text": {"type": "string"}, "content": {"type": ["object", "array", "string"]},
         "agent_name": {"type": "string"}, "socket_id": {"type": "string"}}
    ),
)
async def send(request: Request, conversation_id: str) -> JSONResponse:
    """A message to the user (``{text}`` or ``{content}``), delivered as ``livechat_message``; only by the owner."""
    channel, token = await human(request)
    body = await body_of(request)
    content = body.get("content", body.get("text"))
    if not isinstance(content, (str, dict, list)) or content in ("", {}, []):
        raise ProtocolError(400, "text or content is required")
    livechat = gateway_of(request).livechat
    try:
        event = await livechat.human_message(channel.id, conversation_id, name_of(token, body), normalize_content(content))
    except LookupError:
        raise ConversationNotFound(conversation_id) from None
    except HandoffConflict as exc:
        raise ProtocolError(409, f"{exc} (or another human owns it)", conversation_id) from None
    bind_socket(request, channel, body, conversation_id)
    return JSONResponse({"status": "success", "message_id": event.message_id, "seq": event.seq})


@router.post("/conversations/{conversation_id}/end")
async def end(request: Request, conversation_id: str) -> dict[str, Any]:
    """End the live chat: the AI agent answers again."""
    channel, _ = await human(request)
    livechat = gateway_of(request).livechat
    return summary(await run(livechat.apply(channel.id, conversation_id, "end"), conversation_id))


@router.websocket("/ws")
async def agent_socket(websocket: WebSocket) -> None:
    """Live feed: ``agent_connected {socket_id}``, ``handoff_update`` for the channel, and every event of the
    conversations this socket took (pass its ``socket_id`` to take/messages)."""
    gateway = websocket.app.state.gateway
    token = websocket.headers.get("x-agent-token") or websocket.query_params.get("token")
    found = await gateway.auth.agent_token(token, "human")
    if found is None:
        await websocket.send_denial_response(
            JSONResponse({"error_code": 401, "error_desc": "missing or invalid agent token"}, status_code=401)
        )
        return
    channel, _ = found
    await websocket.accept()
    connection = Connection(websocket, channel, gateway.settings.send_queue_frames, role="human")
    connection.credential = hash_key(token or "")
    gateway.hub.add(connection)
    gateway.hub.watch_channel(connection)
    connection.start()
    connection.send(AgentConnected(socket_id=connection.socket_id, channel_id=channel.id).to_frame())
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    finally:
        gateway.hub.remove(connection)
        await connection.stop()
