"""``WS /dev?apiKey=KEY``: platform events out, and (1.x style) client envelopes in."""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse

from ...errors import RateLimitError
from ...protocol import ProtocolError, parse_envelope
from ..auth import single_credential
from ..connection import Connection
from ..fastjson import frame
from ..gateway import Gateway
from ..handlers import Request as ClientRequest
from ..keys import hash_key
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


@router.websocket(SOCKET_PATH)  # served by .fastpath.FastPaths; the route names it in the app
async def client_socket(websocket: WebSocket) -> None:
    gateway: Gateway = websocket.app.state.gateway
    settings = gateway.settings
    origin = websocket.headers.get("origin")
    if settings.allowed_origins and origin is not None and origin not in settings.allowed_origins:
        await refuse(websocket, 403, "origin not allowed")
        return
    try:
        api_key = single_credential(websocket.query_params.getlist("apiKey"), "apiKey")
    except ProtocolError as exc:
        await refuse(websocket, exc.error_code, exc.error_desc)
        return
    try:
        channel = await gateway.auth.channel(api_key)
    except Exception as exc:  # the store failed: say so before the upgrade, as an HTTP request gets it
        fault = classify(exc)
        if fault is None:
            raise
        gateway.faults.record(fault, exc)
        await refuse(websocket, fault.status, fault.desc)
        return
    if channel is None or api_key is None:
        await refuse(websocket, 401, "missing or invalid apiKey")
        return
    if gateway.hub.count_for(channel.id) >= settings.max_sockets_per_key:
        await refuse(
            websocket, 429, f"too many open sockets for this key (limit {settings.max_sockets_per_key})"
        )
        return
    await websocket.accept()
    connection = Connection(websocket, channel, settings.send_queue_frames)
    connection.credential = hash_key(api_key)
    gateway.hub.add(connection)
    connection.start()
    connection.send(frame("socket_connected", {"socket_id": connection.socket_id}))
    log.debug("socket %s connected (channel %s)", connection.socket_id[:8], channel.id)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            await serve_frame(gateway, connection, api_key, data)
    finally:
        gateway.hub.remove(connection)
        gateway.limits.per_socket.forget(connection.socket_id)
        await connection.stop()
        log.debug("socket %s disconnected", connection.socket_id[:8])


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
