"""The human agents' API (live chat): REST to act, a WebSocket to follow.

Authenticated with a ``human`` (or ``supervisor``) agent token (``x-agent-token`` header or ``token``
query), scoped to one channel: a token never sees another channel's conversations. A token *is* one agent:
its id owns the conversations it takes and its label is the name users see; only the owner replies in or
ends a live chat, and another agent gets it only by an explicit, recorded take-over (``POST …/take
{"take_over": true}``). A ``supervisor`` token may also reply in and end another agent's live chat without
taking it; each such message and end is stored as the supervisor's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse

from ...errors import ConversationNotFound
from ...protocol import AgentConnected, ProtocolError, decode_json, normalize_content
from ..auth import HUMAN_ROLES, single_credential
from ..connection import Connection
from ..handlers import is_transcript_message, transcript_entry
from ..handoff import HandoffConflict, HandoffEvent
from ..keys import hash_key
from ..livechat import AgentIdentity
from ..store import AgentTokenInfo, Channel, ConversationRecord, StoredEvent
from .http import ERROR_RESPONSES, gateway_of, json_body, read_body

router = APIRouter(prefix="/api/agent", tags=["live chat"], responses=ERROR_RESPONSES)
STATES = ("waiting_human", "human")


def agent_token_of(connection: Request | WebSocket) -> str | None:
    """The agent token of a request (header or query; refused when given twice with different values)."""
    return single_credential(
        connection.headers.getlist("x-agent-token") + connection.query_params.getlist("token"), "agent token"
    )


async def human(request: Request) -> tuple[Channel, AgentTokenInfo]:
    token = agent_token_of(request)
    found = await gateway_of(request).auth.human_agent(token)
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


async def conversation_of(request: Request, channel: Channel, conversation_id: str) -> ConversationRecord:
    """The channel's conversation; 404 before anything else (a foreign id looks unknown)."""
    record = await gateway_of(request).store.get_conversation(channel.id, conversation_id)
    if record is None:
        raise ConversationNotFound(conversation_id)
    return record


def identity_of(token: AgentTokenInfo, body: dict[str, Any]) -> AgentIdentity:
    """The acting agent, from the token. A body's ``agent_name`` (older consoles send it) must be the
    token's own name: it can never make one agent speak as another."""
    identity = AgentIdentity(token.id, token.label or token.id, supervisor=token.role == "supervisor")
    name = body.get("agent_name")
    if name is not None and name != identity.name:
        raise ProtocolError(
            403,
            f"agent_name cannot differ from this token's agent ({identity.name}): identity comes from the token",
        )
    return identity


async def agent_names(request: Request, channel: Channel) -> dict[str, str]:
    """Display names of the channel's human agents by token id."""
    tokens = await gateway_of(request).store.list_agent_tokens(channel.id)
    return {t.id: t.label or t.id for t in tokens if t.role in HUMAN_ROLES}


def console_entry(event: StoredEvent) -> dict[str, Any]:
    """A transcript entry for the console: a supervisor's message says so (``supervisor: true``)."""
    entry = transcript_entry(event)
    if event.payload.get("supervisor") is True:
        entry["supervisor"] = True
    return entry


def summary(record: ConversationRecord, names: dict[str, str]) -> dict[str, Any]:
    owner = record.human_agent
    return {
        "conversation_id": record.id,
        "user_id": record.user_id,
        "user_basic_info": record.user_basic_info,
        "state": record.handoff,
        "human_agent": names.get(owner, owner) if owner else None,
        "human_agent_id": owner,
        "metadata": record.metadata,
        "updated_at": record.updated_at,
        "last_seq": record.last_seq,
    }


def bind_socket(request: Request, channel: Channel, body: dict[str, Any], conversation_id: str) -> None:
    connection = gateway_of(request).hub.find(
        body.get("socket_id") if isinstance(body.get("socket_id"), str) else None, channel.id
    )
    if connection is not None and connection.role == "human":
        gateway_of(request).hub.bind(conversation_id, connection)


async def run(coro: Any, conversation_id: str) -> ConversationRecord:
    try:
        result: ConversationRecord = await coro
        return result
    except HandoffConflict as exc:
        raise conflict(exc, conversation_id) from None


def conflict(exc: HandoffConflict, conversation_id: str) -> ProtocolError:
    """409 for a state that does not allow it; 403 when another agent owns the live chat (reply, end)."""
    if exc.by_other and exc.name in (HandoffEvent.REPLY.value, HandoffEvent.END.value):
        return ProtocolError(
            403, f"{exc}: only the agent who has it may do that (take it over first)", conversation_id
        )
    return ProtocolError(409, str(exc), conversation_id)


@router.get("/conversations")
async def list_conversations(request: Request, state: str | None = None) -> dict[str, Any]:
    """Conversations waiting for a human or live with one (``state=waiting_human|human``; default both)."""
    channel, _ = await human(request)
    states = [s for s in (state.split(",") if state else STATES) if s]
    if not set(states) <= set(STATES):
        raise ProtocolError(400, f"state must be among {', '.join(STATES)}")
    records = await gateway_of(request).store.list_handoff(channel.id, states)
    names = await agent_names(request, channel)
    return {"conversations": [summary(r, names) for r in records]}


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
    transcript = [
        console_entry(e)
        for e in await store.messages(channel.id, conversation_id)
        if is_transcript_message(e)
    ]
    return {
        **summary(record, await agent_names(request, channel)),
        "private_metadata": record.private_metadata,
        "transcript": transcript,
    }


@router.post("/conversations/{conversation_id}/escalate")
async def escalate(request: Request, conversation_id: str) -> dict[str, Any]:
    """Hand an AI conversation to the humans' queue (as the agent's ``escalateToHuman`` does)."""
    channel, _ = await human(request)
    body = await body_of(request)
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    livechat = gateway_of(request).livechat
    record = await run(
        livechat.apply(channel.id, conversation_id, HandoffEvent.ESCALATE, reason=reason), conversation_id
    )
    return summary(record, await agent_names(request, channel))


@router.post("/conversations/{conversation_id}/take")
async def take(request: Request, conversation_id: str) -> dict[str, Any]:
    """Take a waiting (or AI) conversation; 409 if another human has it, unless ``{"take_over": true}``:
    then it is transferred to this agent, and the transfer is stored (from whom, to whom)."""
    channel, token = await human(request)
    body = await body_of(request)
    current = await conversation_of(request, channel, conversation_id)
    agent = identity_of(token, body)
    event = HandoffEvent.TAKE_OVER if body.get("take_over") is True else HandoffEvent.TAKE
    names = await agent_names(request, channel)
    previous = names.get(current.human_agent or "") if event is HandoffEvent.TAKE_OVER else None
    livechat = gateway_of(request).livechat
    record = await run(
        livechat.apply(channel.id, conversation_id, event, agent=agent, previous_name=previous),
        conversation_id,
    )
    bind_socket(request, channel, body, conversation_id)
    return summary(record, names)


@router.post(
    "/conversations/{conversation_id}/messages",
    openapi_extra=json_body(
        {
            "text": {"type": "string"},
            "content": {"type": ["object", "array", "string"]},
            "agent_name": {"type": "string"},
            "socket_id": {"type": "string"},
        }
    ),
)
async def send(request: Request, conversation_id: str) -> JSONResponse:
    """A message to the user (``{text}`` or ``{content}``), delivered as ``livechat_message``; only by the
    owner or a supervisor (then stored and sent with ``supervisor: true``)."""
    channel, token = await human(request)
    body = await body_of(request)
    content = body.get("content", body.get("text"))
    if not isinstance(content, (str, dict, list)) or content in ("", {}, []):
        raise ProtocolError(400, "text or content is required")
    livechat = gateway_of(request).livechat
    await conversation_of(request, channel, conversation_id)
    try:
        event = await livechat.human_message(
            channel.id, conversation_id, identity_of(token, body), normalize_content(content)
        )
    except HandoffConflict as exc:
        raise conflict(exc, conversation_id) from None
    bind_socket(request, channel, body, conversation_id)
    return JSONResponse({"status": "success", "message_id": event.message_id, "seq": event.seq})


@router.post("/conversations/{conversation_id}/end")
async def end(request: Request, conversation_id: str) -> dict[str, Any]:
    """End the live chat (only its owner or a supervisor; a waiting one, anyone): the AI agent answers
    again."""
    channel, token = await human(request)
    body = await body_of(request)
    current = await conversation_of(request, channel, conversation_id)
    agent = identity_of(token, body)
    names = await agent_names(request, channel)
    livechat = gateway_of(request).livechat
    record = await run(
        livechat.apply(
            channel.id,
            conversation_id,
            HandoffEvent.END,
            agent=agent,
            previous_name=names.get(current.human_agent or ""),
        ),
        conversation_id,
    )
    return summary(record, names)


@router.websocket("/ws")
async def agent_socket(websocket: WebSocket) -> None:
    """Live feed: ``agent_connected {socket_id}``, ``handoff_update`` for the channel, and every event of the
    conversations this socket took (pass its ``socket_id`` to take/messages)."""
    gateway = websocket.app.state.gateway
    try:
        token = agent_token_of(websocket)
    except ProtocolError as exc:
        await websocket.send_denial_response(JSONResponse(exc.to_body(), status_code=exc.error_code))
        return
    found = await gateway.auth.human_agent(token)
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
