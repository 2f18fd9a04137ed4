"""``CaptivateChatAPI``: one API key, one WebSocket, any number of conversations.

Transport (chosen at construction): ``"http"`` sends client events by HTTP POST with the socket's id,
exactly as the npm client 7.0.0 does (default); ``"websocket"`` sends them as WebSocket frames (1.x style).
Platform events always arrive on the WebSocket and are routed by ``conversation_id``.

A dropped socket is reconnected with exponential backoff and jitter; then every live conversation is
resubscribed from its last ``seq``, so the gateway replays what was missed and nothing arrives twice.
Against the Captivate cloud (no ``seq``, no ``subscribe``) it reconnects and rebinds, but events sent
while the socket was away are not recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import quote

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from ..errors import (
    RateLimitError,
    AuthenticationError,
    CaptivateChatError,
    ChatConnectionError,
    ClientClosedError,
    ProtocolError,
    RequestTimeoutError,
    error_for_status,
)
from ..protocol import (
    BotMessage,
    GeneralError,
    PlatformEvent,
    SocketConnected,
    TranscriptEntry,
    encode_envelope,
    parse_frame,
)
from ..redact import RedactSecrets
from .backoff import ReconnectPolicy
from .conversation import Conversation
from .endpoints import Endpoints, Mode
from .files import FileManager, FileService
from .http import HttpChannel
from .models import PageInfo, UserConversations
from .state import ConnectionState, check_transition

log = logging.getLogger("captivate_chat_api.client")
# The websockets library logs the request line, which carries the key: its records go through a redactor.
ws_log = logging.getLogger("captivate_chat_api.client.websocket")
ws_log.addFilter(RedactSecrets())

Transport = Literal["http", "websocket"]
StartMode = Literal["bot-first", "user-first"]

# Replies that a WebSocket-transport request waits for, by request event type (legacy names of 1.x).
WS_REPLIES = {
    "metadata": "metadata_update_success",
    "metadata_request": "conversation_metadata",
    "delete_conversation": "delete_conversation_success",
    "delete_user_conversations": "delete_user_conversations_success",
    "get_user_conversations": "user_conversations",
    "get_user_conversations_v2": "user_conversations",
    "conversation_transcript_request": "conversation_transcript",
    "subscribe": "subscribe_success",
    "edit_message": "edit_message_success",
    "action": "action_success",
}

DIRECT_REPLIES = frozenset({*WS_REPLIES.values(), "general_error"})
"""Replies to one request: consumed by the waiter, not routed to a conversation."""


class CaptivateChatAPI:
    """A client of the custom-channel protocol.

    Args:
        api_key: the channel's API key.
        mode: ``"prod"`` or ``"dev"`` Captivate cloud (ignored when ``base_url`` is given).
        base_url: a gateway's HTTP base URL, e.g. ``"http://127.0.0.1:8000"``.
        transport: ``"http"`` (default, as the npm client 7.0.0) or ``"websocket"``.
        request_timeout: seconds to wait for a reply to a client event.
        connect_timeout: seconds to wait for the socket and its ``socket_connected``.
        ping_interval: seconds between WebSocket pings; a socket that stops answering pings is dropped
            and reconnected (a half-open TCP connection does not leave the client deaf).
        ping_timeout: seconds to wait for the pong of a ping.
        reconnect: backoff policy for reconnecting a dropped socket.
        retry: backoff policy for resending a message whose acknowledgement was lost.
        resume: resubscribe by ``seq`` after reconnects (default: on for a gateway, off for the cloud).
    """

    def __init__(
        self,
        api_key: str,
        mode: Mode = "prod",
        *,
        base_url: str | None = None,
        transport: Transport = "http",
        request_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        reconnect: ReconnectPolicy | None = None,
        retry: ReconnectPolicy | None = None,
        resume: bool | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        if transport not in ("http", "websocket"):
            raise ValueError("transport must be 'http' or 'websocket'")
        self.api_key = api_key
        self.mode = mode
        self.endpoints = Endpoints.resolve(mode, base_url)
        self.transport = transport
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect_policy = reconnect or ReconnectPolicy()
        self.resume = self.endpoints.is_gateway if resume is None else resume
        self._http = HttpChannel(
            api_key,
            self.endpoints,
            timeout=request_timeout,
            retry=retry or ReconnectPolicy(initial_delay=0.2, max_delay=5.0, max_attempts=6),
            client=http_client,
        )
        self.files = FileService(self._http.client, self.endpoints.files_base)
        """The file service (``/api/file-to-text``, ``/api/presigned-url``): the cloud's, or the gateway's."""
        self.file_manager = FileManager(self.files)
        """Uploads without a conversation (npm's static ``CaptivateChatFileManager.create``: no ``path``)."""
        self._peers: dict[str, CaptivateChatAPI] = {}
        self._owned_peers: list[CaptivateChatAPI] = []
        self.state = ConnectionState.IDLE
        self.socket_id: str | None = None
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event() if _has_loop() else None
        self._supervisor: asyncio.Task[None] | None = None
        self._conversations: dict[str, Conversation] = {}
        self._state_callbacks: list[Callable[[ConnectionState], Any]] = []
        self._start_lock: asyncio.Lock | None = None
        self._start_waiters: list[asyncio.Future[str]] = []
        self._ws_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._pending_sends: dict[str, dict[str, Any]] = {}
        self._resubscribing: set[str] = set()
        self._closing = False

    # lifecycle -------------------------------------------------------------------------------------

    async def __aenter__(self) -> CaptivateChatAPI:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def on_state_change(self, callback: Callable[[ConnectionState], Any]) -> Callable[[ConnectionState], Any]:
        """``callback(state)`` on every connection state change. Usable as a decorator."""
        self._state_callbacks.append(callback)
        return callback

    def _set_state(self, state: ConnectionState) -> None:
        if state is self.state:
            return
        check_transition(self.state, state)
        log.debug("connection %s -> %s", self.state.value, state.value)
        self.state = state
        for callback in list(self._state_callbacks):
            try:
                result = callback(state)
                if asyncio.iscoroutine(result):
                    asyncio.get_running_loop().create_task(result)
            except Exception:
                log.exception("an on_state_change callback raised")

    @property
    def is_connected(self) -> bool:
        return self.state is ConnectionState.CONNECTED

    async def connect(self) -> None:
        """Open the WebSocket and wait for ``socket_connected``.

        Raises:
            AuthenticationError: the key was refused (before the upgrade).
            ChatConnectionError: the platform could not be reached.
            RequestTimeoutError: no ``socket_connected`` within ``connect_timeout``.
        """
        if self.state is ConnectionState.CONNECTED:
            return
        self._closing = False
        if self._connected is None:
            self._connected = asyncio.Event()
        self._start_lock = self._start_lock or asyncio.Lock()
        self._set_state(ConnectionState.CONNECTING)
        try:
            await self._open_socket()
        except BaseException:
            self._set_state(ConnectionState.CLOSED)
            raise
        self._set_state(ConnectionState.CONNECTED)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def close(self) -> None:
        """Close the socket (code 1000) and the HTTP client; conversations' iterators end."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
            self._supervisor = None
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close(1000, "client closed")
            self._ws = None
        self._fail_waiters(ClientClosedError("the client was closed"))
        for conversation in list(self._conversations.values()):
            conversation._finish()
        for peer in self._owned_peers:
            await peer.close()
        await self._http.aclose()
        if self.state is not ConnectionState.CLOSED:
            self._set_state(ConnectionState.CLOSED)

    async def _open_socket(self) -> None:
        url = f"{self.endpoints.ws_url}?apiKey={quote(self.api_key, safe='')}"
        try:
            ws = await websockets.connect(
                url,
                open_timeout=self.connect_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=2,
                max_size=None,
                logger=ws_log,
            )
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise AuthenticationError(status, "the API key was refused") from None
            raise ChatConnectionError(f"WebSocket upgrade refused with HTTP {status}") from None
        except (OSError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            raise ChatConnectionError(f"cannot open the WebSocket: {exc}") from None
        except TimeoutError:
            raise RequestTimeoutError(f"the WebSocket did not open within {self.connect_timeout:g} s") from None
        try:
            while True:
                raw = await asyncio.wait_for(ws.recv(), self.connect_timeout)
                event = parse_frame(raw)
                if isinstance(event, SocketConnected):
                    break
        except TimeoutError:
            await ws.close()
            raise RequestTimeoutError("socket_connected not received") from None
        except (websockets.ConnectionClosed, ProtocolError) as exc:
            raise ChatConnectionError(f"the socket closed before socket_connected: {exc}") from None
        self._ws = ws
        self.socket_id = event.socket_id
        assert self._connected is not None
        self._connected.set()

    async def _supervise(self) -> None:
        """Read the socket; when it drops, reconnect and resume until closed or out of attempts."""
        while not self._closing:
            ws = self._ws
            assert ws is not None
            await self._read(ws)
            if self._closing:
                return
            assert self._connected is not None
            self._connected.clear()
            self._set_state(ConnectionState.RECONNECTING)
            if not await self._reconnect():
                self._set_state(ConnectionState.CLOSED)
                self._fail_waiters(ChatConnectionError("the connection was lost and could not be restored"))
                for conversation in list(self._conversations.values()):
                    conversation._finish()
                return
            self._set_state(ConnectionState.CONNECTED)
            asyncio.get_running_loop().create_task(self._resume_all())

    async def _reconnect(self) -> bool:
        for delay in self.reconnect_policy.delays():
            await asyncio.sleep(delay)
            if self._closing:
                return False
            try:
                await self._open_socket()
                return True
            except AuthenticationError:
                log.warning("reconnect refused: the API key is no longer valid")
                return False
            except CaptivateChatError as exc:
                log.info("reconnect failed (%s); retrying", exc)
        return False

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    event = parse_frame(raw)
                except ProtocolError as exc:
                    log.warning("ignoring a malformed frame: %s", exc)
                    continue
                request_id = _request_id(raw)
                await self._route(event, request_id)
        except websockets.ConnectionClosed as exc:
            log.info("socket closed (%s)", exc.rcvd.code if exc.rcvd else "no close frame")
        except Exception:
            log.exception("socket reader failed")
            with contextlib.suppress(Exception):
                await ws.close(1011)

    def _fail_waiters(self, error: Exception) -> None:
        futures: list[asyncio.Future[Any]] = [*self._start_waiters, *self._ws_waiters.values()]
        for future in futures:
            if not future.done():
                future.set_exception(error)

    # routing ---------------------------------------------------------------------------------------

    async def _route(self, event: PlatformEvent, request_id: str | None) -> None:
        waiter = self._ws_waiters.get(request_id) if request_id else None
        if event.event_type == "conversation_start_success":
            self._started(event.conversation_id, request_id)
            return
        if waiter is not None and not waiter.done() and event.event_type != "user_message":
            if isinstance(event, GeneralError):
                retry_after = getattr(event, "retry_after", None)
                waiter.set_exception(
                    error_for_status(
                        _code(event.error_code),
                        event.error_desc or "error",
                        event.conversation_id,
                        float(retry_after) if isinstance(retry_after, (int, float)) else None,
                    )
                )
            else:
                waiter.set_result(event.model_dump(exclude={"event_type"}))
            if event.event_type in DIRECT_REPLIES:
                return
        if event.event_type == "user_message":
            client_msg_id = getattr(event, "client_msg_id", None)
            pending = self._ws_waiters.get(f"msg:{client_msg_id}") if client_msg_id else None
            if pending is not None and not pending.done():
                pending.set_result(event.model_dump(exclude={"event_type"}))
        conversation = self._conversations.get(event.conversation_id or "")
        if conversation is None:
            if isinstance(event, GeneralError) and event.conversation_id is None:
                log.warning("platform error: %s %s", event.error_code, event.error_desc)
            return
        if isinstance(event, GeneralError) and _code(event.error_code) == 413 and event.message_link:
            # as npm: on_message gets the fetched message, and on_error still hears of the 413
            if conversation._accept(await self._fetch_large(event)):
                conversation._notify_error(event)
            return
        conversation._accept(event)

    def _started(self, conversation_id: str | None, request_id: str | None) -> None:
        if not conversation_id or conversation_id in self._conversations:
            return
        waiter = self._ws_waiters.get(request_id) if request_id else None
        if waiter is not None and not waiter.done():
            waiter.set_result({"conversation_id": conversation_id})
            return
        while self._start_waiters:
            future = self._start_waiters.pop(0)
            if not future.done():
                future.set_result(conversation_id)
                return

    async def _fetch_large(self, event: GeneralError) -> PlatformEvent:
        """The 413 fallback: fetch a message too large for a frame from its ``message_link``."""
        try:
            body = await self._http.get_json(str(event.message_link), conversation_id=event.conversation_id)
            message = body.get("botMessage") or {}
            return BotMessage(
                conversation_id=event.conversation_id,
                content=message.get("content"),
                seq=event.seq,
                message_id=getattr(event, "message_id", None) or message.get("message_id"),
            )
        except CaptivateChatError as exc:
            log.warning("could not fetch a large message: %s", exc)
            return GeneralError(
                conversation_id=event.conversation_id,
                seq=event.seq,
                error_code=413,
                error_desc=f"Error fetching large message: {exc}",
            )

    def _attach(self, conversation_id: str, metadata: dict[str, Any] | None = None) -> Conversation:
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            conversation = Conversation(self, conversation_id, metadata)
            self._conversations[conversation_id] = conversation
        elif metadata:
            conversation.metadata.update(metadata)
        return conversation

    def _forget(self, conversation: Conversation) -> None:
        self._conversations.pop(conversation.conversation_id, None)

    # sending ---------------------------------------------------------------------------------------

    async def _wait_connected(self) -> None:
        if self.state is ConnectionState.CLOSED or self._closing:
            raise ClientClosedError("the client is closed; call connect()")
        if self._connected is None or self.state is ConnectionState.IDLE:
            raise ChatConnectionError("not connected; call connect() first")
        try:
            await asyncio.wait_for(self._connected.wait(), self.request_timeout)
        except TimeoutError:
            raise RequestTimeoutError("the socket is reconnecting and did not come back in time") from None

    async def _request(self, event_type: str, payload: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """Send one client event on the chosen transport; return the direct reply's payload."""
        if self.transport == "http":
            if self.state is ConnectionState.CLOSED or self._closing:
                raise ClientClosedError("the client is closed; call connect()")
            return await self._http.send_event(event_type, payload, self.socket_id, idempotent=idempotent)
        reply_type = WS_REPLIES.get(event_type)
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if reply_type is not None:
            self._ws_waiters[request_id] = future
        try:
            await self._send_frame(event_type, payload, request_id)
            if reply_type is None:
                return {"status": "success"}
            return await asyncio.wait_for(future, self.request_timeout)
        except TimeoutError:
            raise RequestTimeoutError(f"{event_type}: no {reply_type} within {self.request_timeout:g} s") from None
        finally:
            self._ws_waiters.pop(request_id, None)

    async def _send_frame(self, event_type: str, payload: dict[str, Any], request_id: str | None = None) -> None:
        await self._wait_connected()
        frame = encode_envelope(event_type, payload)
        if request_id:
            frame["request_id"] = request_id
        assert self._ws is not None
        try:
            await self._ws.send(json.dumps(frame, separators=(",", ":")))
        except websockets.ConnectionClosed as exc:
            raise ChatConnectionError(f"{event_type}: the socket closed while sending") from exc

    async def _send_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self.transport == "http":
            return await self._request("user_message", payload, idempotent=True)
        # WebSocket transport: the acknowledgement is the echo carrying our client_msg_id. Until it comes,
        # the message is pending and is sent again (same id, stored once) after a reconnect.
        client_msg_id = payload["client_msg_id"]
        key = f"msg:{client_msg_id}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._ws_waiters[key] = future
        self._pending_sends[client_msg_id] = payload
        loop = asyncio.get_running_loop()
        try:
            deadline = loop.time() + self.request_timeout
            while True:
                try:
                    await self._send_frame("user_message", payload, request_id=key)
                except ChatConnectionError:
                    pass  # resent by _resume_all once the socket is back
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise RequestTimeoutError("user_message: not acknowledged in time")
                try:
                    return await asyncio.wait_for(asyncio.shield(future), remaining)
                except TimeoutError:
                    raise RequestTimeoutError("user_message: not acknowledged in time") from None
                except RateLimitError as limited:  # over the rate: wait as told, then send again (same id)
                    wait = min(limited.retry_after or 0.5, deadline - loop.time())
                    if wait <= 0:
                        raise
                    await asyncio.sleep(wait)
                    future = loop.create_future()
                    self._ws_waiters[key] = future
        finally:
            self._ws_waiters.pop(key, None)
            self._pending_sends.pop(client_msg_id, None)

    # resume ----------------------------------------------------------------------------------------

    async def _resume_all(self) -> None:
        for payload in list(self._pending_sends.values()):
            with contextlib.suppress(CaptivateChatError):
                await self._send_frame("user_message", payload)
        for conversation in list(self._conversations.values()):
            try:
                if self.resume:
                    await self._subscribe(conversation, conversation.last_seq)
                else:  # the cloud: any client event naming the new socket binds it
                    await self._request("metadata_request", {"conversation_id": conversation.conversation_id})
            except CaptivateChatError as exc:
                log.warning("could not resume %s: %s", conversation.conversation_id, exc)

    def _resubscribe_soon(self, conversation: Conversation) -> None:
        if conversation.conversation_id in self._resubscribing or not self.resume:
            return
        self._resubscribing.add(conversation.conversation_id)

        async def run() -> None:
            try:
                await self._subscribe(conversation, conversation.last_seq)
            except CaptivateChatError as exc:
                log.warning("resubscribe of %s failed: %s", conversation.conversation_id, exc)
            finally:
                self._resubscribing.discard(conversation.conversation_id)

        asyncio.get_running_loop().create_task(run())

    async def _subscribe(self, conversation: Conversation, after_seq: int | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"conversation_id": conversation.conversation_id}
        if after_seq is not None:
            payload["after_seq"] = after_seq
        body = await self._request("subscribe", payload)
        last_seq = body.get("last_seq")
        if after_seq is None and isinstance(last_seq, int) and last_seq > conversation.last_seq:
            conversation.last_seq = last_seq  # live only: start counting from the present
        conversation._mark_synced()
        if body.get("recovered") is False:
            log.warning("%s could not be fully recovered: %s", conversation.conversation_id, body.get("reason"))
            if isinstance(last_seq, int) and last_seq < conversation.last_seq:
                conversation.last_seq = last_seq  # the log is behind what we saw: count from where it is
        return body

    # public API ------------------------------------------------------------------------------------

    async def create_conversation(
        self,
        user_id: str,
        user_basic_info: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        mode: StartMode = "bot-first",
        private_metadata: dict[str, Any] | None = None,
    ) -> Conversation:
        """Start a conversation. ``bot-first`` asks the agent for a greeting (it is kept until you listen).

        Raises:
            RequestTimeoutError: no ``conversation_start_success`` within ``request_timeout``.
        """
        if mode not in ("bot-first", "user-first"):
            raise ValueError("mode must be 'bot-first' or 'user-first'")
        full_metadata = dict(metadata or {})
        full_metadata["private"] = dict(private_metadata or {})  # as npm 7.0.0: always present, {} by default
        payload = {"userId": user_id, "userBasicInfo": user_basic_info or {}, "metadata": full_metadata}
        await self._wait_connected()
        assert self._start_lock is not None
        async with self._start_lock:  # without a correlation id, starts are matched in order
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._start_waiters.append(future)
            try:
                body = await self._request("conversation_start", payload)
                conversation_id = _conversation_id_of(body)
                if conversation_id is None:
                    conversation_id = await asyncio.wait_for(future, self.request_timeout)
            except TimeoutError:
                raise RequestTimeoutError("no conversation_start_success received") from None
            finally:
                if future in self._start_waiters:
                    self._start_waiters.remove(future)
            conversation = self._attach(conversation_id, {k: v for k, v in full_metadata.items() if k != "private"})
        conversation._mark_synced()
        if mode == "bot-first":
            await conversation.send_message({"type": "text", "text": ""})
        return conversation

    async def get_conversation(self, conversation_id: str, *, after_seq: int | None = None) -> Conversation:
        """Re-attach to an existing conversation; with ``after_seq`` (a stored ``last_seq``), replay
        what came after it first. Without, only new events are delivered."""
        conversation = self._attach(conversation_id)
        if after_seq is not None:
            conversation.last_seq = max(conversation.last_seq, after_seq)
        if self.resume:
            await self._subscribe(conversation, after_seq)
        else:
            await self._request("metadata_request", {"conversation_id": conversation_id})
        return conversation

    async def get_user_conversations(
        self,
        user_id: str,
        *,
        filter: dict[str, Any] | None = None,
        search: dict[str, Any] | None = None,
        pagination: dict[str, int | str] | None = None,
        api_keys: list[str] | None = None,
    ) -> UserConversations:
        """The user's conversations; v2 (with a ``pagination`` block) when any option is given."""
        payload: dict[str, Any] = {"userId": user_id}
        for key, value in (("filter", filter), ("search", search), ("pagination", pagination), ("apiKeys", api_keys)):
            if value:
                payload[key] = value
        event_type = "get_user_conversations_v2" if len(payload) > 1 else "get_user_conversations"
        body = await self._request(event_type, payload)
        data = body.get("event", {}).get("event_payload", body) if isinstance(body.get("event"), dict) else body
        conversations = [
            (await self._client_for(item.get("apiKey")))._attach(item["conversation_id"], item.get("metadata") or {})
            for item in data.get("conversations", [])
            if isinstance(item, dict) and isinstance(item.get("conversation_id"), str)
        ]
        block = data.get("pagination")
        return UserConversations(conversations, PageInfo.from_wire(block) if isinstance(block, dict) else None)

    async def _client_for(self, api_key: Any) -> CaptivateChatAPI:
        """The client of a listed conversation's own key (as npm gives each item its ``apiKey``): this
        one, a manager's sibling, or one opened for it (same options, closed with this client)."""
        if not isinstance(api_key, str) or not api_key or api_key == self.api_key:
            return self
        peer = self._peers.get(api_key)
        if peer is None:
            base_url = self.endpoints.http_base if self.endpoints.is_gateway else None
            peer = CaptivateChatAPI(
                api_key, self.mode, base_url=base_url, transport=self.transport, request_timeout=self.request_timeout,
                connect_timeout=self.connect_timeout, ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
                reconnect=self.reconnect_policy, resume=self.resume,
            )
            peer._peers = self._peers  # one family of clients shares its directory
            self._peers[api_key] = peer
            self._owned_peers.append(peer)
        if peer.state is ConnectionState.IDLE:
            await peer.connect()
        return peer

    async def get_secure_file_url(self, file_key: str, expires_in: int = 7200) -> str:
        """A secure URL for a stored file, valid ``expires_in`` seconds (npm
        ``CaptivateChatFileManager.getSecureFileUrl``)."""
        return await self.files.presign(file_key, expires_in)

    async def delete_user_conversations(self, user_id: str, *, soft_delete: bool = True) -> int | None:
        """Delete every conversation of the user; returns how many (None if the platform does not say)."""
        if not user_id:
            raise ValueError("user_id is required")
        body = await self._request("delete_user_conversations", {"userId": user_id, "softdelete": soft_delete})
        deleted = body.get("deleted")
        return deleted if isinstance(deleted, int) else None

    async def _transcript(self, conversation_id: str) -> list[TranscriptEntry]:
        if self.transport == "websocket":
            body = await self._request("conversation_transcript_request", {"conversation_id": conversation_id})
        else:
            body = await self._http.get_json(
                f"{self.endpoints.http_base}/api/transcript?conversation_id={quote(conversation_id, safe='')}",
                conversation_id=conversation_id,
            )
        return [TranscriptEntry.from_wire(entry) for entry in body.get("transcript", []) if isinstance(entry, dict)]


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _request_id(raw: str | bytes) -> str | None:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if '"request_id"' not in text:
        return None
    value = json.loads(raw).get("request_id")
    return value if isinstance(value, str) else None


def _code(value: int | str | None) -> int:
    try:
        return int(value) if value is not None else 500
    except (TypeError, ValueError):
        return 500


def _conversation_id_of(body: dict[str, Any]) -> str | None:
    value = body.get("conversation_id")
    if not isinstance(value, str):
        event = body.get("event")
        payload = event.get("event_payload") if isinstance(event, dict) else None
        value = payload.get("conversation_id") if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None
