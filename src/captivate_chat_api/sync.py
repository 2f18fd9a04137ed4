"""A blocking facade over the async SDK, for scripts and notebooks::

    from captivate_chat_api.sync import CaptivateChatAPI

    with CaptivateChatAPI(api_key, base_url="http://127.0.0.1:8000") as api:
        conversation = api.create_conversation("user-1")
        conversation.send_message("hi")
        for event in conversation.events(timeout=10):
            print(event)

Every facade object (a :class:`CaptivateChatAPI` or a :class:`CaptivateChatManager`) owns one background
thread running an asyncio event loop, stopped by ``close()``. Each method submits the async SDK's
coroutine to that loop and waits for it: the async classes do all the work, these only delegate.

Callbacks (``on_message`` …) are plain functions called on that loop thread, one at a time, in order.
They must return quickly and must not call this facade's blocking methods (that would wait for the very
thread running the callback; it raises ``RuntimeError`` instead). To answer events with calls, iterate
``events()`` in your own thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, Self, TypeVar, Unpack

from .client.api import CaptivateChatAPI as AsyncCaptivateChatAPI
from .client.api import StartMode
from .client.conversation import Conversation as AsyncConversation
from .client.conversation import EventStream
from .client.conversation import UserConversations as AsyncUserConversations
from .client.endpoints import Mode
from .client.files import FileInput as AsyncFileInput
from .client.files import FileManager as AsyncFileManager
from .client.files import FileSequence, FileSource, ProgressCallback, UploadOptions
from .client.manager import CaptivateChatManager as AsyncCaptivateChatManager
from .client.models import PageInfo, SentMessage
from .client.state import ConnectionState
from .errors import ClientClosedError, RequestTimeoutError
from .protocol import PlatformEvent, TranscriptEntry
from .protocol.attachments import FileObject

__all__ = [
    "CaptivateChatAPI",
    "CaptivateChatManager",
    "Conversation",
    "EventIterator",
    "FileInput",
    "FileManager",
    "UserConversations",
]

T = TypeVar("T")
P = ParamSpec("P")
F = TypeVar("F", bound=Callable[..., Any])

STOP_TIMEOUT = 15.0


class LoopThread:
    """An asyncio event loop running in a daemon thread; one per facade object, stopped by :meth:`stop`.

    Args:
        timeout: an upper bound in seconds on every blocking call (``RequestTimeoutError`` after it);
            None leaves the bounds to the async SDK's own ``request_timeout`` and ``connect_timeout``.
    """

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="captivate-chat-loop", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def run(self, coro: Coroutine[Any, Any, T], *, bounded: bool = True) -> T:
        """Run ``coro`` on the loop and wait for its result (its exception is raised here)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "a blocking captivate_chat_api.sync method was called on the event loop thread (from a "
                "callback?); callbacks must not block: iterate events() in your own thread instead"
            )
        if self._stopped:
            coro.close()
            raise ClientClosedError("the client is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        timeout = self.timeout if bounded else None
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():  # the call itself timed out
                raise
            future.cancel()
            raise RequestTimeoutError(f"no result within {timeout:g} s") from None
        except BaseException:
            future.cancel()  # our wait was interrupted (Ctrl+C): do not leave the call running
            raise

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call a plain function on the loop thread (the async SDK's objects are not thread-safe)."""

        async def invoke() -> T:
            return fn(*args, **kwargs)

        return self.run(invoke())

    def stop(self) -> None:
        """Cancel what is still running on the loop, stop it and join its thread. Idempotent."""
        if self._stopped:
            return
        if threading.current_thread() is self._thread:
            raise RuntimeError("close() cannot be called from a callback (on the event loop thread)")
        self._stopped = True
        try:
            asyncio.run_coroutine_threadsafe(_drain(), self.loop).result(STOP_TIMEOUT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(STOP_TIMEOUT)
            if not self._thread.is_alive():
                self.loop.close()


async def _drain() -> None:
    loop = asyncio.get_running_loop()
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


class EventIterator:
    """A blocking iterator over one conversation's events (see :meth:`Conversation.events`).

    Each item is waited for at most ``timeout`` seconds (``TimeoutError`` after that; None waits for
    ever). Iteration ends when the conversation is deleted or the client is closed.
    """

    def __init__(self, stream: EventStream, loop: LoopThread, timeout: float | None) -> None:
        self._stream = stream
        self._loop = loop
        self.timeout = timeout

    def __iter__(self) -> Iterator[PlatformEvent]:
        return self

    def __next__(self) -> PlatformEvent:
        return self.next(self.timeout)

    def next(self, timeout: float | None = None) -> PlatformEvent:
        """The next event, waiting at most ``timeout`` seconds.

        Raises:
            TimeoutError: no event within ``timeout``.
            StopIteration: the stream has ended.
        """
        event = self._loop.run(_next_or_end(self._stream, timeout), bounded=False)
        if event is None:
            raise StopIteration
        return event

    def close(self) -> None:
        """Stop collecting events."""
        if not self._loop.stopped:
            self._loop.call(self._stream.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _next_or_end(stream: EventStream, timeout: float | None) -> PlatformEvent | None:
    try:
        return await stream.next(timeout)
    except StopAsyncIteration:
        return None


class FileInput(FileSequence):
    """A blocking :class:`captivate_chat_api.FileInput`: the same files, ``refresh_secure_url()`` waits."""

    def __init__(self, files: AsyncFileInput, loop: LoopThread) -> None:
        super().__init__(())
        self.files = files.files  # one list: a refresh updates what both views hold
        self._input = files
        self._loop = loop

    def refresh_secure_url(self, expires_in: int = 7200) -> str | None:
        return self._loop.run(self._input.refresh_secure_url(expires_in))


class FileManager:
    """A blocking file manager (``conversation.file_manager``, ``api.file_manager``); uploads stream from
    disk on the loop thread while this thread waits (``on_progress`` runs on the loop thread)."""

    def __init__(self, manager: AsyncFileManager, loop: LoopThread) -> None:
        self._manager = manager
        self._loop = loop

    def create(self, file: FileSource, **options: Unpack[UploadOptions]) -> FileInput:
        """Upload one file (see :meth:`captivate_chat_api.FileManager.create`)."""
        return FileInput(self._loop.run(self._manager.create(file, **options)), self._loop)

    def create_file(self, file: FileSource, **options: Unpack[UploadOptions]) -> FileObject:
        return self._loop.run(self._manager.create_file(file, **options))

    def create_multiple(
        self,
        files: Sequence[FileSource],
        *,
        storage: bool = True,
        urls: Sequence[str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> FileInput:
        result = self._loop.run(
            self._manager.create_multiple(files, storage=storage, urls=urls, on_progress=on_progress)
        )
        return FileInput(result, self._loop)


class Conversation:
    """A conversation, blocking; each method is :class:`captivate_chat_api.Conversation`'s, awaited.

    A thin view: all state lives in the async conversation, so two views of it are equal.
    """

    def __init__(self, conversation: AsyncConversation, loop: LoopThread) -> None:
        self._conversation = conversation
        self._loop = loop

    def __repr__(self) -> str:
        return f"<sync Conversation {self.conversation_id} last_seq={self.last_seq}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Conversation) and other._conversation is self._conversation

    def __hash__(self) -> int:
        return hash(id(self._conversation))

    @property
    def conversation_id(self) -> str:
        return self._conversation.conversation_id

    @property
    def last_seq(self) -> int:
        """The highest ``seq`` received; store it to resume with ``get_conversation(id, after_seq=…)``."""
        return self._conversation.last_seq

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata last set or fetched (a copy)."""
        return dict(self._conversation.metadata)

    @property
    def time_to_live(self) -> int | None:
        return self._conversation.time_to_live

    @property
    def closed(self) -> bool:
        return self._conversation.closed

    @property
    def file_manager(self) -> FileManager:
        """Uploads for this conversation (see :attr:`captivate_chat_api.Conversation.file_manager`)."""
        return FileManager(self._loop.call(lambda: self._conversation.file_manager), self._loop)

    # receiving: callbacks run on the loop thread --------------------------------------------------

    def on_message(self, callback: F) -> F:
        """``callback(message, kind)``; kind is ``"ai_agent"``, ``"human_agent"`` or ``"error"``."""
        return self._register(self._conversation.on_message, callback)

    def on_error(self, callback: F) -> F:
        """``callback(ErrorInfo)`` for each ``general_error`` of this conversation."""
        return self._register(self._conversation.on_error, callback)

    def on_conversation_update(self, callback: F) -> F:
        """``callback(ConversationUpdateInfo)``."""
        return self._register(self._conversation.on_conversation_update, callback)

    def on_action_received(self, callback: F) -> F:
        """``callback(actions)`` with the list of ``{id, data}`` the agent sent."""
        return self._register(self._conversation.on_action_received, callback)

    def on_event(self, callback: F) -> F:
        """``callback(event)`` for every typed event of this conversation."""
        return self._register(self._conversation.on_event, callback)

    def _register(self, add: Callable[[F], F], callback: F) -> F:
        self._loop.call(add, callback)
        return callback

    def events(self, timeout: float | None = None) -> EventIterator:
        """A blocking iterator over this conversation's events, collecting from now on; ``timeout``
        bounds the wait for each event (``TimeoutError``)."""
        return EventIterator(self._loop.call(self._conversation.events), self._loop, timeout)

    # sending --------------------------------------------------------------------------------------

    def send_message(
        self, content: str | dict[str, Any] | list[Any], *, client_msg_id: str | None = None
    ) -> SentMessage:
        """Send a user message (a string becomes ``{type: "text", text}``)."""
        return self._loop.run(self._conversation.send_message(content, client_msg_id=client_msg_id))

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        self._loop.run(self._conversation.set_metadata(metadata))

    def set_private_metadata(self, private_metadata: dict[str, Any]) -> None:
        self._loop.run(self._conversation.set_private_metadata(private_metadata))

    def get_metadata(self) -> dict[str, Any]:
        return self._loop.run(self._conversation.get_metadata())

    def set_time_to_live(self, days: int) -> None:
        self._loop.run(self._conversation.set_time_to_live(days))

    def send_action(self, action_id: str, data: dict[str, Any] | None = None) -> None:
        self._loop.run(self._conversation.send_action(action_id, data))

    def edit_message(self, message_id: str, content: str | dict[str, Any]) -> None:
        self._loop.run(self._conversation.edit_message(message_id, content))

    def get_transcript(self) -> list[TranscriptEntry]:
        return self._loop.run(self._conversation.get_transcript())

    def delete(self, *, soft_delete: bool = True) -> None:
        self._loop.run(self._conversation.delete(soft_delete=soft_delete))

    def subscribe(self, after_seq: int | None = None) -> dict[str, Any]:
        return self._loop.run(self._conversation.subscribe(after_seq))


@dataclass(frozen=True, slots=True)
class UserConversations:
    conversations: list[Conversation]
    pagination: PageInfo | None = None

    @classmethod
    def wrap(cls, result: AsyncUserConversations, loop: LoopThread) -> UserConversations:
        return cls([Conversation(c, loop) for c in result.conversations], result.pagination)


class CaptivateChatAPI:
    """A blocking :class:`captivate_chat_api.CaptivateChatAPI`, with its own event loop thread.

    Args:
        api_key: the channel's API key.
        mode: ``"prod"`` or ``"dev"`` Captivate cloud (ignored when ``base_url`` is given).
        base_url: a gateway's HTTP base URL, e.g. ``"http://127.0.0.1:8000"``.
        timeout: an upper bound in seconds on every blocking call (default: the SDK's own timeouts).
        options: any other keyword argument of the async client (``transport``, ``request_timeout`` …).
    """

    _api: AsyncCaptivateChatAPI
    _loop: LoopThread
    _owns_loop: bool

    def __init__(
        self,
        api_key: str,
        mode: Mode = "prod",
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> None:
        loop = LoopThread(timeout)
        try:
            api = loop.call(AsyncCaptivateChatAPI, api_key, mode, base_url=base_url, **options)
        except BaseException:
            loop.stop()
            raise
        self._api, self._loop, self._owns_loop = api, loop, True

    @classmethod
    def _wrap(cls, api: AsyncCaptivateChatAPI, loop: LoopThread) -> CaptivateChatAPI:
        """A view of a client whose loop belongs to someone else (a manager)."""
        self = cls.__new__(cls)
        self._api, self._loop, self._owns_loop = api, loop, False
        return self

    def __enter__(self) -> Self:
        try:
            self.connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> ConnectionState:
        return self._api.state

    @property
    def is_connected(self) -> bool:
        return self._api.is_connected

    @property
    def socket_id(self) -> str | None:
        return self._api.socket_id

    def on_state_change(self, callback: Callable[[ConnectionState], Any]) -> Callable[[ConnectionState], Any]:
        """``callback(state)`` on every connection state change (on the loop thread)."""
        return self._loop.call(self._api.on_state_change, callback)

    def connect(self) -> None:
        self._loop.run(self._api.connect())

    def close(self) -> None:
        """Close the connection, and stop the loop thread if this client owns it. Idempotent."""
        if self._loop.stopped:
            return
        try:
            self._loop.run(self._api.close())
        finally:
            if self._owns_loop:
                self._loop.stop()

    def create_conversation(
        self,
        user_id: str,
        user_basic_info: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        mode: StartMode = "bot-first",
        private_metadata: dict[str, Any] | None = None,
    ) -> Conversation:
        conversation = self._loop.run(
            self._api.create_conversation(user_id, user_basic_info, metadata, mode, private_metadata)
        )
        return Conversation(conversation, self._loop)

    def get_conversation(self, conversation_id: str, *, after_seq: int | None = None) -> Conversation:
        return Conversation(
            self._loop.run(self._api.get_conversation(conversation_id, after_seq=after_seq)), self._loop
        )

    def get_user_conversations(
        self,
        user_id: str,
        *,
        filter: dict[str, Any] | None = None,
        search: dict[str, Any] | None = None,
        pagination: dict[str, int | str] | None = None,
        api_keys: list[str] | None = None,
    ) -> UserConversations:
        result = self._loop.run(
            self._api.get_user_conversations(
                user_id, filter=filter, search=search, pagination=pagination, api_keys=api_keys
            )
        )
        return UserConversations.wrap(result, self._loop)

    def delete_user_conversations(self, user_id: str, *, soft_delete: bool = True) -> int | None:
        return self._loop.run(self._api.delete_user_conversations(user_id, soft_delete=soft_delete))

    @property
    def file_manager(self) -> FileManager:
        """Uploads without a conversation (npm's static ``CaptivateChatFileManager``)."""
        return FileManager(self._api.file_manager, self._loop)

    def get_secure_file_url(self, file_key: str, expires_in: int = 7200) -> str:
        return self._loop.run(self._api.get_secure_file_url(file_key, expires_in))


class CaptivateChatManager:
    """A blocking :class:`captivate_chat_api.CaptivateChatManager`: one client per key, one loop thread."""

    def __init__(
        self, api_keys: list[str], mode: Mode = "prod", *, timeout: float | None = None, **options: Any
    ) -> None:
        self._loop = LoopThread(timeout)
        try:
            self._manager = self._loop.call(AsyncCaptivateChatManager, api_keys, mode, **options)
        except BaseException:
            self._loop.stop()
            raise
        self.apis = {key: CaptivateChatAPI._wrap(api, self._loop) for key, api in self._manager.apis.items()}

    @classmethod
    def create(
        cls, api_keys: list[str], mode: Mode = "prod", *, timeout: float | None = None, **options: Any
    ) -> CaptivateChatManager:
        """A connected manager."""
        manager = cls(api_keys, mode, timeout=timeout, **options)
        manager.__enter__()
        return manager

    def __enter__(self) -> Self:
        try:
            self.connect_all()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_api(self, api_key: str) -> CaptivateChatAPI:
        return self.apis[api_key]

    def connect_all(self) -> None:
        self._loop.run(self._manager.connect_all())

    def close(self) -> None:
        """Close every client and stop the loop thread. Idempotent."""
        if self._loop.stopped:
            return
        try:
            self._loop.run(self._manager.close())
        finally:
            self._loop.stop()

    def get_user_conversations(
        self,
        user_id: str,
        *,
        api_keys: list[str] | None = None,
        filter: dict[str, Any] | None = None,
        search: dict[str, Any] | None = None,
        pagination: dict[str, int | str] | None = None,
    ) -> UserConversations:
        result = self._loop.run(
            self._manager.get_user_conversations(
                user_id, api_keys=api_keys, filter=filter, search=search, pagination=pagination
            )
        )
        return UserConversations.wrap(result, self._loop)
