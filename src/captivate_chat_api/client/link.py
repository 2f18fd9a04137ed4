"""The async side of the session: sends client events on the transport and applies the session's decisions.

:class:`Link` is what a :class:`~captivate_chat_api.client.conversation.Conversation` talks to (it implements
:class:`~captivate_chat_api.client.conversation.ConversationLink`): requests and their waiters, messages
resent until acknowledged, ``subscribe`` and the resume after a reconnect. The routing rules themselves are
in :mod:`.session` (no I/O); the socket's lifecycle is the API's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from ..errors import (
    CaptivateChatError,
    ChatConnectionError,
    ClientClosedError,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
)
from ..protocol import BotMessage, GeneralError, PlatformEvent, TranscriptEntry
from ..protocol.replies import reply_to
from .conversation import Conversation
from .endpoints import Endpoints
from .files import FileService
from .session import (
    Closed,
    Cursor,
    Decision,
    Deliver,
    FetchLarge,
    Resubscribe,
    Session,
    Settle,
    Started,
    message_key,
)
from .transport import FrameSocket, Transport, envelope_for

log = logging.getLogger("captivate_chat_api.client")


class Link:
    """Requests, acknowledgements and resumes of one client, over its transport.

    Args:
        gate: waits until the socket is up (raises when the client is closed or not connected).
        is_closed: True once the client is closing or closed.
    """

    def __init__(
        self,
        transport: Transport,
        endpoints: Endpoints,
        files: FileService,
        *,
        api_key: str,
        request_timeout: float,
        resume: bool,
        gate: Callable[[], Awaitable[None]],
        is_closed: Callable[[], bool],
    ) -> None:
        self.transport = transport
        self.endpoints = endpoints
        self.files = files
        self.api_key = api_key
        self.request_timeout = request_timeout
        self.resume = resume
        self.session = Session()
        self.socket: FrameSocket | None = None
        self.socket_id: str | None = None
        self.conversations: dict[str, Conversation] = {}
        self._gate = gate
        self._is_closed = is_closed
        self._futures: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._start_waiters: list[asyncio.Future[str]] = []
        self._start_lock = asyncio.Lock()
        self._pending_sends: dict[str, dict[str, Any]] = {}
        self._resubscribing: set[str] = set()

    # conversations -----------------------------------------------------------------------------------

    def attach(self, conversation_id: str, metadata: dict[str, Any] | None = None) -> Conversation:
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            cursor = self.session.track(conversation_id)
            conversation = Conversation(self, conversation_id, metadata, cursor=cursor)
            self.conversations[conversation_id] = conversation
        elif metadata:
            conversation.metadata.update(metadata)
        return conversation

    def forget(self, conversation_id: str) -> None:
        """Stop routing to this conversation and end its streams."""
        self.session.forget(conversation_id)
        conversation = self.conversations.pop(conversation_id, None)
        if conversation is not None:
            conversation.inbox.finish()

    def finish_all(self) -> None:
        for conversation in list(self.conversations.values()):
            conversation.inbox.finish()

    def fail_waiters(self, error: Exception) -> None:
        futures: list[asyncio.Future[Any]] = [*self._start_waiters, *self._futures.values()]
        for future in futures:
            if not future.done():
                future.set_exception(error)

    # frames in -----------------------------------------------------------------------------------------

    async def feed(self, raw: str | bytes) -> None:
        """One frame from the socket: let the session decide, then do what it says."""
        try:
            decisions = self.session.receive(raw)
        except ProtocolError as exc:
            log.warning("ignoring a malformed frame: %s", exc)
            return
        for decision in decisions:
            await self.apply(decision)

    async def apply(self, decision: Decision) -> None:
        if isinstance(decision, Settle):
            self._settle(decision)
        elif isinstance(decision, Started):
            self._started(decision.conversation_id)
        elif isinstance(decision, Deliver):
            conversation = self.conversations.get(decision.conversation_id)
            if conversation is not None:
                conversation.inbox.deliver(decision.event)
        elif isinstance(decision, Closed):
            self.forget(decision.conversation_id)
        elif isinstance(decision, FetchLarge):
            await self._deliver_large(decision.event)
        elif isinstance(decision, Resubscribe):
            self.resubscribe_soon(decision.conversation_id)

    async def _deliver_large(self, event: GeneralError) -> None:
        """As npm: ``on_message`` gets the fetched message, and ``on_error`` still hears of the 413."""
        admitted = self.session.admit(await self._fetch_large(event))
        for decision in admitted:
            await self.apply(decision)
        conversation = self.conversations.get(event.conversation_id or "")
        if conversation is not None and any(isinstance(d, Deliver) for d in admitted):
            conversation.inbox.notify_error(event)

    def _settle(self, decision: Settle) -> None:
        future = self._futures.get(decision.key)
        if future is None or future.done():
            return
        if decision.error is not None:
            future.set_exception(decision.error)
        else:
            future.set_result(decision.payload or {})

    def _started(self, conversation_id: str) -> None:
        while self._start_waiters:
            future = self._start_waiters.pop(0)
            if not future.done():
                future.set_result(conversation_id)
                return

    async def _fetch_large(self, event: GeneralError) -> PlatformEvent:
        """The 413 fallback: fetch a message too large for a frame from its ``message_link``."""
        try:
            body = await self.transport.http.get_json(
                str(event.message_link), conversation_id=event.conversation_id
            )
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

    # events out ----------------------------------------------------------------------------------------

    def _wait(self, key: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        self.session.expect(key)
        return future

    def _unwait(self, key: str) -> None:
        self._futures.pop(key, None)
        self.session.withdraw(key)

    async def request(
        self, event_type: str, payload: dict[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]:
        """Send one client event; return its direct reply's payload."""
        if self.transport.replies_inline:
            if self._is_closed():
                raise ClientClosedError("the client is closed; call connect()")
            envelope = envelope_for(event_type, payload)
            reply = await self.transport.send(
                self.socket, envelope, socket_id=self.socket_id, idempotent=idempotent
            )
            return reply if reply is not None else {"status": "success"}
        reply_type = reply_to(event_type)
        request_id = uuid.uuid4().hex
        future = self._wait(request_id) if reply_type is not None else None
        try:
            await self._send_frame(event_type, payload, request_id)
            if future is None:
                return {"status": "success"}
            return await asyncio.wait_for(future, self.request_timeout)
        except TimeoutError:
            raise RequestTimeoutError(
                f"{event_type}: no {reply_type} within {self.request_timeout:g} s"
            ) from None
        finally:
            self._unwait(request_id)

    async def _send_frame(
        self, event_type: str, payload: dict[str, Any], request_id: str | None = None
    ) -> None:
        await self._gate()
        envelope = envelope_for(event_type, payload, request_id)
        await self.transport.send(self.socket, envelope, socket_id=self.socket_id, idempotent=False)

    async def send_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A user message, acknowledged once: by the POST's reply, or by its echo on the socket."""
        if self.transport.replies_inline:
            return await self.request("user_message", payload, idempotent=True)
        # WebSocket: the acknowledgement is the echo carrying our client_msg_id. Until it comes, the message
        # is pending and is sent again (same id, stored once) after a reconnect.
        client_msg_id = payload["client_msg_id"]
        key = message_key(client_msg_id)
        self._pending_sends[client_msg_id] = payload
        deadline = asyncio.get_running_loop().time() + self.request_timeout
        try:
            while True:
                try:
                    return await self._send_once(payload, key, deadline)
                except RateLimitError as limited:  # over the rate: wait as told, then send again (same id)
                    wait = min(limited.retry_after or 0.5, deadline - asyncio.get_running_loop().time())
                    if wait <= 0:
                        raise
                    await asyncio.sleep(wait)
        finally:
            self._unwait(key)
            self._pending_sends.pop(client_msg_id, None)

    async def _send_once(self, payload: dict[str, Any], key: str, deadline: float) -> dict[str, Any]:
        future = self._wait(key)
        try:
            await self._send_frame("user_message", payload, request_id=key)
        except ChatConnectionError:
            pass  # resent by resume_all once the socket is back
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            if remaining <= 0:
                raise TimeoutError
            return await asyncio.wait_for(asyncio.shield(future), remaining)
        except TimeoutError:
            raise RequestTimeoutError("user_message: not acknowledged in time") from None

    async def start(self, payload: dict[str, Any], metadata: dict[str, Any]) -> Conversation:
        """``conversation_start``; without a correlation id, starts are matched to replies in order."""
        await self._gate()
        async with self._start_lock:
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._start_waiters.append(future)
            try:
                body = await self.request("conversation_start", payload)
                conversation_id = conversation_id_of(body)
                if conversation_id is None:
                    conversation_id = await asyncio.wait_for(future, self.request_timeout)
            except TimeoutError:
                raise RequestTimeoutError("no conversation_start_success received") from None
            finally:
                if future in self._start_waiters:
                    self._start_waiters.remove(future)
            conversation = self.attach(conversation_id, metadata)
        self.session.mark_synced(conversation_id)
        return conversation

    async def transcript(self, conversation_id: str) -> list[TranscriptEntry]:
        if self.transport.replies_inline:
            url = (
                f"{self.endpoints.http_base}/api/transcript?conversation_id={quote(conversation_id, safe='')}"
            )
            body = await self.transport.http.get_json(url, conversation_id=conversation_id)
        else:
            body = await self.request("conversation_transcript_request", {"conversation_id": conversation_id})
        return [
            TranscriptEntry.from_wire(entry)
            for entry in body.get("transcript", [])
            if isinstance(entry, dict)
        ]

    # resume ----------------------------------------------------------------------------------------------

    async def subscribe(self, conversation_id: str, after_seq: int | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"conversation_id": conversation_id}
        if after_seq is not None:
            payload["after_seq"] = after_seq
        body = await self.request("subscribe", payload)
        cursor = self.session.cursors.get(conversation_id) or Cursor()
        last_seq = body.get("last_seq")
        if after_seq is None and isinstance(last_seq, int) and last_seq > cursor.last_seq:
            cursor.last_seq = last_seq  # live only: start counting from the present
        cursor.synced = True
        if body.get("recovered") is False:
            log.warning("%s could not be fully recovered: %s", conversation_id, body.get("reason"))
            if isinstance(last_seq, int) and last_seq < cursor.last_seq:
                cursor.last_seq = last_seq  # the log is behind what we saw: count from where it is
        return body

    async def rebind(self, conversation_id: str, after_seq: int | None) -> None:
        """Bind the conversation to the current socket: ``subscribe`` (gateway) or any event (the cloud)."""
        if self.resume:
            await self.subscribe(conversation_id, after_seq)
        else:  # the cloud: any client event naming the new socket binds it
            await self.request("metadata_request", {"conversation_id": conversation_id})

    async def resume_all(self) -> None:
        for payload in list(self._pending_sends.values()):
            with contextlib.suppress(CaptivateChatError):
                await self._send_frame("user_message", payload)
        for conversation in list(self.conversations.values()):
            try:
                await self.rebind(conversation.conversation_id, conversation.last_seq)
            except CaptivateChatError as exc:
                log.warning("could not resume %s: %s", conversation.conversation_id, exc)

    def resubscribe_soon(self, conversation_id: str) -> None:
        if conversation_id in self._resubscribing or not self.resume:
            return
        self._resubscribing.add(conversation_id)

        async def run() -> None:
            try:
                cursor = self.session.cursors.get(conversation_id)
                await self.subscribe(conversation_id, cursor.last_seq if cursor else None)
            except CaptivateChatError as exc:
                log.warning("resubscribe of %s failed: %s", conversation_id, exc)
            finally:
                self._resubscribing.discard(conversation_id)

        asyncio.get_running_loop().create_task(run())


def conversation_id_of(body: dict[str, Any]) -> str | None:
    value = body.get("conversation_id")
    if not isinstance(value, str):
        event = body.get("event")
        payload = event.get("event_payload") if isinstance(event, dict) else None
        value = payload.get("conversation_id") if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None
