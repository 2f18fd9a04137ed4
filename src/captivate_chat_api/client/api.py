"""``CaptivateChatAPI``: one API key, one WebSocket, any number of conversations.

Transport (chosen at construction): ``"http"`` sends client events by HTTP POST with the socket's id,
exactly as the npm client 7.0.0 does (default); ``"websocket"`` sends them as WebSocket frames (1.x style);
an :class:`~captivate_chat_api.client.transport.InProcessTransport` calls a gateway app in this process.
Platform events always arrive on the socket and are routed by ``conversation_id`` (see :mod:`.session`).

A dropped socket is reconnected with exponential backoff and jitter; then every live conversation is
resubscribed from its last ``seq``, so the gateway replays what was missed and nothing arrives twice.
Against the Captivate cloud (no ``seq``, no ``subscribe``) it reconnects and rebinds, but events sent
while the socket was away are not recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx
import websockets

from ..errors import (
    AuthenticationError,
    CaptivateChatError,
    ChatConnectionError,
    ClientClosedError,
    ProtocolError,
    RequestTimeoutError,
)
from ..protocol import SocketConnected, parse_frame
from .backoff import ReconnectPolicy
from .conversation import Conversation, UserConversations
from .endpoints import Endpoints, Mode
from .files import FileManager, FileService
from .link import Link
from .models import PageInfo
from .state import ConnectionState, announce
from .transport import FrameSocket, InProcessTransport, TransportName, make_transport, same_transport

log = logging.getLogger("captivate_chat_api.client")

StartMode = Literal["bot-first", "user-first"]


class CaptivateChatAPI:
    """A client of the custom-channel protocol.

    Args:
        api_key: the channel's API key.
        mode: ``"prod"`` or ``"dev"`` Captivate cloud (ignored when ``base_url`` is given).
        base_url: a gateway's HTTP base URL, e.g. ``"http://127.0.0.1:8000"``.
        transport: ``"http"`` (default, as the npm client 7.0.0), ``"websocket"``, or an
            :class:`InProcessTransport` (a gateway app in this process, for tests).
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
        transport: TransportName | InProcessTransport = "http",
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
        self.api_key = api_key
        self.mode = mode
        self.endpoints = Endpoints.resolve(mode, base_url)
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect_policy = reconnect or ReconnectPolicy()
        self.resume = self.endpoints.is_gateway if resume is None else resume
        retry = retry or ReconnectPolicy(initial_delay=0.2, max_delay=5.0, max_attempts=6)
        self._transport = make_transport(
            transport, api_key, self.endpoints, request_timeout, retry, http_client
        )
        self.transport = self._transport.name
        self.files = FileService(self._transport.http.client, self.endpoints.files_base)
        """The file service (``/api/file-to-text``, ``/api/presigned-url``): the cloud's, or the gateway's."""
        self.file_manager = FileManager(self.files)
        """Uploads without a conversation (npm's static ``CaptivateChatFileManager.create``: no ``path``)."""
        self._peers: dict[str, CaptivateChatAPI] = {}
        self._owned_peers: list[CaptivateChatAPI] = []
        self.state = ConnectionState.IDLE
        self._connected: asyncio.Event | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._state_callbacks: list[Callable[[ConnectionState], Any]] = []
        self._closing = False
        self._link = Link(
            self._transport,
            self.endpoints,
            self.files,
            api_key=api_key,
            request_timeout=request_timeout,
            resume=self.resume,
            gate=self._wait_connected,
            is_closed=lambda: self.state is ConnectionState.CLOSED or self._closing,
        )

    @property
    def socket_id(self) -> str | None:
        return self._link.socket_id

    # lifecycle -------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def on_state_change(self, callback: Callable[[ConnectionState], Any]) -> Callable[[ConnectionState], Any]:
        """``callback(state)`` on every connection state change. Usable as a decorator."""
        self._state_callbacks.append(callback)
        return callback

    def _set_state(self, state: ConnectionState) -> None:
        if state is not self.state:
            previous, self.state = self.state, state
            announce(previous, state, self._state_callbacks)

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
        if self._link.socket is not None:
            with contextlib.suppress(Exception):
                await self._link.socket.close(1000, "client closed")
            self._link.socket = None
        self._link.fail_waiters(ClientClosedError("the client was closed"))
        self._link.finish_all()
        for peer in self._owned_peers:
            await peer.close()
        await self._transport.aclose()
        if self.state is not ConnectionState.CLOSED:
            self._set_state(ConnectionState.CLOSED)

    async def _open_socket(self) -> None:
        url = f"{self.endpoints.ws_url}?apiKey={quote(self.api_key, safe='')}"
        socket = await self._transport.connect(
            url,
            timeout=self.connect_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
        )
        try:
            while True:
                event = parse_frame(await asyncio.wait_for(socket.recv(), self.connect_timeout))
                if isinstance(event, SocketConnected):
                    break
        except TimeoutError:
            await socket.close()
            raise RequestTimeoutError("socket_connected not received") from None
        except (websockets.ConnectionClosed, ProtocolError) as exc:
            raise ChatConnectionError(f"the socket closed before socket_connected: {exc}") from None
        self._link.socket, self._link.socket_id = socket, event.socket_id
        assert self._connected is not None
        self._connected.set()

    async def _supervise(self) -> None:
        """Read the socket; when it drops, reconnect and resume until closed or out of attempts."""
        while not self._closing:
            socket = self._link.socket
            assert socket is not None and self._connected is not None
            await self._read(socket)
            if self._closing:
                return
            self._connected.clear()
            self._set_state(ConnectionState.RECONNECTING)
            if not await self._reconnect():
                self._set_state(ConnectionState.CLOSED)
                self._link.fail_waiters(
                    ChatConnectionError("the connection was lost and could not be restored")
                )
                self._link.finish_all()
                return
            self._set_state(ConnectionState.CONNECTED)
            asyncio.get_running_loop().create_task(self._link.resume_all())

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

    async def _read(self, socket: FrameSocket) -> None:
        try:
            while True:
                await self._link.feed(await socket.recv())
        except websockets.ConnectionClosed as exc:
            log.info("socket closed (%s)", exc.rcvd.code if exc.rcvd else "no close frame")
        except Exception:
            log.exception("socket reader failed")
            with contextlib.suppress(Exception):
                await socket.close(1011)

    async def _wait_connected(self) -> None:
        if self.state is ConnectionState.CLOSED or self._closing:
            raise ClientClosedError("the client is closed; call connect()")
        if self._connected is None or self.state is ConnectionState.IDLE:
            raise ChatConnectionError("not connected; call connect() first")
        try:
            await asyncio.wait_for(self._connected.wait(), self.request_timeout)
        except TimeoutError:
            raise RequestTimeoutError("the socket is reconnecting and did not come back in time") from None

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
        public = {k: v for k, v in full_metadata.items() if k != "private"}
        conversation = await self._link.start(payload, public)
        if mode == "bot-first":
            await conversation.send_message({"type": "text", "text": ""})
        return conversation

    async def get_conversation(self, conversation_id: str, *, after_seq: int | None = None) -> Conversation:
        """Re-attach to an existing conversation; with ``after_seq`` (a stored ``last_seq``), replay
        what came after it first. Without, only new events are delivered."""
        conversation = self._link.attach(conversation_id)
        if after_seq is not None:
            conversation.last_seq = max(conversation.last_seq, after_seq)
        await self._link.rebind(conversation_id, after_seq)
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
        for key, value in (
            ("filter", filter),
            ("search", search),
            ("pagination", pagination),
            ("apiKeys", api_keys),
        ):
            if value:
                payload[key] = value
        event_type = "get_user_conversations_v2" if len(payload) > 1 else "get_user_conversations"
        body = await self._link.request(event_type, payload)
        data = (
            body.get("event", {}).get("event_payload", body) if isinstance(body.get("event"), dict) else body
        )
        conversations = [
            (await self._client_for(item.get("apiKey")))._link.attach(
                item["conversation_id"], item.get("metadata") or {}
            )
            for item in data.get("conversations", [])
            if isinstance(item, dict) and isinstance(item.get("conversation_id"), str)
        ]
        block = data.get("pagination")
        return UserConversations(
            conversations, PageInfo.from_wire(block) if isinstance(block, dict) else None
        )

    async def _client_for(self, api_key: Any) -> CaptivateChatAPI:
        """The client of a listed conversation's own key (as npm gives each item its ``apiKey``): this
        one, a manager's sibling, or one opened for it (same options, closed with this client)."""
        if not isinstance(api_key, str) or not api_key or api_key == self.api_key:
            return self
        peer = self._peers.get(api_key)
        if peer is None:
            base_url = self.endpoints.http_base if self.endpoints.is_gateway else None
            peer = CaptivateChatAPI(
                api_key, self.mode, base_url=base_url, transport=same_transport(self._transport),
                request_timeout=self.request_timeout, connect_timeout=self.connect_timeout,
                ping_interval=self.ping_interval, ping_timeout=self.ping_timeout, reconnect=self.reconnect_policy,
                resume=self.resume,
            )  # fmt: skip
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
        body = await self._link.request(
            "delete_user_conversations", {"userId": user_id, "softdelete": soft_delete}
        )
        deleted = body.get("deleted")
        return deleted if isinstance(deleted, int) else None
