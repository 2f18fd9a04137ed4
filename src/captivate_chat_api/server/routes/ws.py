"""``WS /dev?apiKey=KEY``: platform events out, and (1.x style) client envelopes in."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse

from ...errors import RateLimitError
from ...protocol import ProtocolError, parse_envelope
from ..auth import single_credential
from ..connection import Connection, WebSocketLike
from ..fastjson import frame
from ..gateway import Gateway
from ..handlers import Request as ClientRequest
from ..keys import hash_key
from ..store import Channel
from ..store.faults import classify

router = APIRouter()
SOCKET_PATH = "/dev"
log = logging.getLogger("captivate_chat_api.server.ws")


async def refuse(websocket: WebSocket, status: int, desc: str) -> None:
    """Refuse before the upgrade: an HTTP status and JSON body, never a 101."""
    await websocket.send_denial_response(
        JSONResponse({"error_code": status, "error_desc": desc}, status_code=status)
    )


def error_frame(exc: ProtocolError, request_id: str | None = None) -> str:
    payload = {"conversation_id": exc.conversation_id, **exc.to_body()}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        payload["retry_after"] = round(retry_after, 3)
    return frame("general_error", payload, request_id)


@dataclass(frozen=True, slots=True)
class Admission:
    """How the upgrade of ``/dev`` is answered: the channel and key to accept it with, or a refusal."""

    channel: Channel | None = None
    api_key: str = ""
    status: int = 101
    desc: str = ""


async def admit(gateway: Gateway, origin: str | None, api_keys: list[str]) -> Admission:
    """Check an upgrade of ``/dev`` (its ``Origin``, its ``apiKey`` values) before it is accepted; a store
    that fails is a refusal with its status, as an HTTP request gets it (an unknown error is raised)."""
    settings = gateway.settings
    if settings.allowed_origins and origin is not None and origin not in settings.allowed_origins:
        return Admission(status=403, desc="origin not allowed")
    try:
        api_key = single_credential(api_keys, "apiKey")
    except ProtocolError as exc:
        return Admission(status=exc.error_code, desc=exc.error_desc)
    try:
        channel = await gateway.auth.channel(api_key)
    except Exception as exc:
        fault = classify(exc)
        if fault is None:
            raise
        gateway.faults.record(fault, exc)
        return Admission(status=fault.status, desc=fault.desc)
    if channel is None or api_key is None:
        return Admission(status=401, desc="missing or invalid apiKey")
    if gateway.hub.count_for(channel.id) >= settings.max_sockets_per_key:
        limit = settings.max_sockets_per_key
        return Admission(status=429, desc=f"too many open sockets for this key (limit {limit})")
    return Admission(channel, api_key)


def opened(gateway: Gateway, socket: WebSocketLike, admission: Admission) -> Connection:
    """An accepted ``/dev`` socket: registered with the hub, and told its ``socket_id``."""
    assert admission.channel is not None
    connection = Connection(socket, admission.channel, gateway.settings.send_queue_frames)
    connection.credential = hash_key(admission.api_key)
    gateway.hub.add(connection)
    connection.send(frame("socket_connected", {"socket_id": connection.socket_id}))
    log.debug("socket %s connected (channel %s)", connection.socket_id[:8], admission.channel.id)
    return connection


def gone(gateway: Gateway, connection: Connection) -> None:
    """The socket closed: out of the hub and the rate limiter (the caller stops its writer)."""
    gateway.hub.remove(connection)
    gateway.limits.per_socket.forget(connection.socket_id)
    log.debug("socket %s disconnected", connection.socket_id[:8])


@router.websocket(SOCKET_PATH)
async def client_socket(websocket: WebSocket) -> None:
    """``/dev`` over ASGI (the in-process app; a server runs :class:`..client_socket.ClientSocket`)."""
    gateway: Gateway = websocket.app.state.gateway
    admission = await admit(
        gateway, websocket.headers.get("origin"), websocket.query_params.getlist("apiKey")
    )
    if admission.channel is None:
        await refuse(websocket, admission.status, admission.desc)
        return
    await websocket.accept()
    connection = opened(gateway, websocket, admission)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            await serve_frame(gateway, connection, admission.api_key, data)
    finally:
        gone(gateway, connection)
        await connection.stop()


async def serve_frame(gateway: Gateway, connection: Connection, api_key: str, data: str | bytes) -> None:
    request_id = None
    try:
        envelope = parse_envelope(data)
        request_id = envelope.request_id
        try:  # checked after parsing, so that a refusal names the request and the conversation
            gateway.limits.check(connection.channel.id, connection.socket_id)
        except RateLimitError as exc:
            exc.conversation_id = envelope.conversation_id
            raise
        async with gateway.limits.admission.slot(connection.channel.id):  # fair across tenants
            reply = await gateway.handlers.handle(
                ClientRequest(connection.channel, api_key, envelope, connection, via_websocket=True)
            )
    except ProtocolError as exc:
        gateway.metrics.error("ws", exc.error_code)
        connection.send(error_frame(exc, request_id))
        return
    except Exception as exc:
        fault = classify(exc)
        if fault is None:
            log.exception("unexpected error serving a WebSocket frame")
        else:
            gateway.faults.record(fault, exc)
        error = ProtocolError(fault.status, fault.desc) if fault else ProtocolError(500, "internal error")
        gateway.metrics.error("ws", error.error_code)
        connection.send(error_frame(error, request_id))
        return
    for out in (reply.socket_frame(request_id), reply.ws_frame(request_id)):
        if out is not None:
            connection.send(out)
    if reply.after is not None:
        reply.after()
