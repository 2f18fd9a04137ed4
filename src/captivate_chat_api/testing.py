"""Test a custom channel offline: an in-process gateway with a scriptable agent, and pytest fixtures.

Needs the ``server`` extra (``pip install 'captivate-chat-api[server]'``). Installed, this module is a
pytest plugin providing two fixtures:

- ``captivate_gateway``: a gateway for one test (a :class:`LocalGateway`: ``base_url``, ``ws_url``,
  ``api_key``, and ``agent``, a fresh :class:`ScriptedAgent`);
- ``captivate_api``: an async fixture, a connected ``CaptivateChatAPI`` for that gateway (needs
  pytest-asyncio).

::

    async def test_greeting(captivate_gateway, captivate_api):
        captivate_gateway.agent.reply("Welcome!")
        conversation = await captivate_api.create_conversation("user-1")
        async for event in conversation.events():
            if isinstance(event, BotMessage):
                break
        assert event.content == {"type": "text", "text": "Welcome!"}
        assert captivate_gateway.agent.inputs == [""]  # the bot-first greeting turn

Outside pytest, :func:`run_gateway` is a context manager that does the same.

Faster still, :func:`in_process_gateway` runs the gateway's ASGI app in the test's own event loop and
connects clients to it with an :class:`~captivate_chat_api.client.transport.InProcessTransport` (no
sockets, no thread, no port)::

    async with in_process_gateway() as gateway, gateway.client() as api:
        conversation = await api.create_conversation("user-1")
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import tempfile
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .protocol import AgentResponse, ChatRequest, OutgoingAction, text_content

if TYPE_CHECKING:
    from .client import CaptivateChatAPI
    from .server import Settings
    from .server.agents import Agent

__all__ = ["InProcessGateway", "LocalGateway", "ScriptedAgent", "in_process_gateway", "run_gateway"]

Message: TypeAlias = str | dict[str, Any]
Reply: TypeAlias = AgentResponse | Message | list[Message] | None
"""What a scripted turn may answer: an AgentResponse, a text, a content dict, a list of these, or None."""
ReplyFunction: TypeAlias = Callable[[ChatRequest], Reply | Awaitable[Reply]]

SERVER_EXTRA = "the Captivate Chat test kit needs the server extra: pip install 'captivate-chat-api[server]'"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class ScriptedAgent:
    """An agent for tests: answers each turn as scripted, and records every request in ``requests``.

    - ``agent.reply("Hi!")`` queues the answer to one turn (texts, content dicts, or an AgentResponse);
    - ``agent.reply_with(fn)`` answers with ``fn(request)`` (sync or async) once the queue is empty;
    - ``agent.fail("down", 503)`` queues a turn that fails (the client gets a ``general_error``).

    With nothing scripted, a turn is answered by the built-in demo agent (``You said: …``). Every turn
    counts, including the bot-first greeting turn (``user_input == ""``) and client actions.
    """

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []
        self._queue: deque[ReplyFunction] = deque()
        self._default: ReplyFunction | None = None
        self._demo: Agent | None = None

    def reply(
        self, *messages: Message | AgentResponse, actions: dict[str, Any] | None = None
    ) -> ScriptedAgent:
        """Queue the answer to one turn: its messages, and ``actions`` (``{action_id: payload}``)."""
        if len(messages) == 1 and isinstance(messages[0], AgentResponse):
            response = messages[0]
        else:
            response = _response([m for m in messages if not isinstance(m, AgentResponse)])
        if actions:
            response = response.model_copy(
                update={"outgoing_action": [OutgoingAction(id=k, payload=v) for k, v in actions.items()]}
            )
        self._queue.append(lambda request: response)
        return self

    def reply_with(self, fn: ReplyFunction) -> ReplyFunction:
        """Answer every turn not covered by ``reply()`` with ``fn(request)``. Usable as a decorator."""
        self._default = fn
        return fn

    def fail(self, error_desc: str = "the agent failed", error_code: int = 502) -> ScriptedAgent:
        """Queue a turn that fails with ``error_code``/``error_desc`` (as the client's ``general_error``)."""

        def raise_error(request: ChatRequest) -> Reply:
            from .server.agents import AgentError

            raise AgentError(error_desc, error_code)

        self._queue.append(raise_error)
        return self

    @property
    def inputs(self) -> list[str | None]:
        """The ``user_input`` of every turn so far."""
        return [request.user_input for request in self.requests]

    @property
    def pending(self) -> int:
        """Queued replies not used yet."""
        return len(self._queue)

    async def __call__(self, request: ChatRequest) -> AgentResponse:
        self.requests.append(request)
        fn = self._queue.popleft() if self._queue else self._default
        if fn is None:
            return await self._demo_agent()(request)
        result = fn(request)
        if inspect.isawaitable(result):
            result = await result
        return _as_response(result)

    def _demo_agent(self) -> Agent:
        if self._demo is None:
            from .server.agents import DemoAgent

            self._demo = DemoAgent()
        return self._demo


def _as_response(result: object) -> AgentResponse:
    if isinstance(result, AgentResponse):
        return result
    if result is None:
        return AgentResponse()
    if isinstance(result, str | dict):
        return _response([result])
    if isinstance(result, list) and all(isinstance(m, str | dict) for m in result):
        return _response(result)
    raise TypeError(
        f"a scripted reply must be an AgentResponse, a str, a dict or a list of these, not {result!r}"
    )


def _response(messages: list[Message]) -> AgentResponse:
    return AgentResponse(response=[text_content(m) if isinstance(m, str) else m for m in messages])


@dataclass(frozen=True)
class LocalGateway:
    """A gateway running in this process (see :func:`run_gateway`)."""

    base_url: str
    """``http://127.0.0.1:PORT``: pass it as the client's ``base_url``."""
    ws_url: str
    """The WebSocket endpoint, ``ws://127.0.0.1:PORT/dev`` (append ``?apiKey=KEY``)."""
    api_key: str
    """A key generated and registered at start (its own channel)."""
    agent: Any
    """The agent answering every channel (a :class:`ScriptedAgent` unless another was given)."""
    database: str


@contextlib.contextmanager
def run_gateway(
    agent: Agent | None = None, api_keys: list[str] | None = None, database: str | Path | None = None
) -> Iterator[LocalGateway]:
    """Run a gateway in a background thread (its own event loop) on a free loopback port.

    Args:
        agent: answers every turn (default: a new :class:`ScriptedAgent`).
        api_keys: more keys to register at start, each its own channel.
        database: a SQLite path or ``sqlite:///PATH`` URL (default: a temporary file, removed after).

    Raises:
        ImportError: the ``server`` extra is not installed.
        RuntimeError: the gateway did not start.
    """
    try:
        from .server import create_app
        from .server.logs import RedactSecrets
        from .server.serve import GatewayServer, config_for
    except ImportError as exc:
        raise ImportError(SERVER_EXTRA) from exc

    agent = agent if agent is not None else ScriptedAgent()
    with contextlib.ExitStack() as stack:
        settings, key, url = _settings(stack, api_keys, database, host="127.0.0.1", port=0, public_url=None)
        app = create_app(settings, agent=agent)
        # uvicorn logs WebSocket request lines, whose query string carries the key
        redact = RedactSecrets()
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addFilter(redact)
        stack.callback(uvicorn_log.removeFilter, redact)

        ready = threading.Event()

        def on_ready(host: str, port: int) -> None:
            settings.port = port  # message_link URLs must name the bound port
            ready.set()

        server = GatewayServer(config_for(settings, app), app, on_ready)
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                server.run()
            except SystemExit as exc:  # uvicorn exits so when it cannot bind
                failure.append(exc)
            finally:
                ready.set()

        thread = threading.Thread(target=serve, name="captivate-chat-gateway", daemon=True)
        thread.start()
        stack.callback(_stop, server, thread)
        if not ready.wait(START_TIMEOUT) or not server.started:
            reason = repr(failure[0]) if failure else "timed out" if thread.is_alive() else "see the log"
            raise RuntimeError(f"the in-process gateway did not start: {reason}")
        base = f"http://127.0.0.1:{settings.port}"
        yield LocalGateway(base, f"ws://127.0.0.1:{settings.port}/dev", key, agent, url)


@dataclass(frozen=True)
class InProcessGateway:
    """A gateway app running in the current event loop (see :func:`in_process_gateway`)."""

    app: Any
    """The gateway's ASGI app (its lifespan is running)."""
    api_key: str
    agent: Any
    database: str
    base_url: str = "http://gateway.test"

    def client(self, messages: str = "http", **options: Any) -> CaptivateChatAPI:
        """A client of this gateway, not connected yet (``async with`` it). ``messages``: ``"http"`` (the
        npm 7.0.0 path) or ``"websocket"`` (1.x); ``options`` go to ``CaptivateChatAPI``."""
        from .client import CaptivateChatAPI
        from .client.transport import InProcessTransport

        transport = InProcessTransport(self.app, messages=messages)
        return CaptivateChatAPI(
            options.pop("api_key", self.api_key), base_url=self.base_url, transport=transport, **options
        )


@contextlib.asynccontextmanager
async def in_process_gateway(
    agent: Agent | None = None, api_keys: list[str] | None = None, database: str | Path | None = None
) -> AsyncIterator[InProcessGateway]:
    """Run a gateway's app in this event loop, its lifespan started and stopped around the block.

    Args: as for :func:`run_gateway`.

    Raises:
        ImportError: the ``server`` extra is not installed.
    """
    try:
        from .server import create_app
    except ImportError as exc:
        raise ImportError(SERVER_EXTRA) from exc

    agent = agent if agent is not None else ScriptedAgent()
    with contextlib.ExitStack() as stack:
        settings, key, url = _settings(
            stack, api_keys, database, host="gateway.test", port=80, public_url=InProcessGateway.base_url
        )
        app = create_app(settings, agent=agent)
        async with app.router.lifespan_context(app):
            yield InProcessGateway(app, key, agent, url)


def _settings(
    stack: contextlib.ExitStack, api_keys: list[str] | None, database: str | Path | None, **where: Any
) -> tuple[Settings, str, str]:
    """A test gateway's settings (a new key first, then ``api_keys``), its key and its database URL. Without
    ``database``, a temporary SQLite file, removed when ``stack`` closes."""
    from .server import Settings
    from .server.keys import generate_key

    if database is None:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="captivate-chat-test-"))
        database = Path(directory) / "gateway.db"
    url = str(database) if str(database).startswith("sqlite:") else f"sqlite:///{database}"
    key = generate_key()
    settings = Settings(
        database=url,
        api_keys=[key, *(api_keys or [])],
        access_log=False,
        create_dev_key=False,
        shutdown_grace_seconds=5.0,
        **where,
    )
    return settings, key, url


def _stop(server: Any, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(STOP_TIMEOUT)
    if thread.is_alive():
        raise RuntimeError("the in-process gateway did not stop")


# the pytest plugin -------------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # run_gateway and ScriptedAgent work without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    try:
        import pytest_asyncio
    except ImportError:
        pytest_asyncio = None  # type: ignore[assignment]

    @pytest.fixture
    def captivate_gateway() -> Iterator[LocalGateway]:
        """An in-process gateway for this test, answered by a fresh ScriptedAgent (``.agent``)."""
        with run_gateway(ScriptedAgent()) as gateway:
            yield gateway

    if pytest_asyncio is not None:

        @pytest_asyncio.fixture
        async def captivate_api(captivate_gateway: LocalGateway) -> AsyncIterator[CaptivateChatAPI]:
            """A connected async ``CaptivateChatAPI`` for ``captivate_gateway``, closed after the test."""
            from .client import CaptivateChatAPI

            async with CaptivateChatAPI(
                captivate_gateway.api_key, base_url=captivate_gateway.base_url
            ) as api:
                yield api

    else:

        @pytest.fixture
        def captivate_api() -> None:
            """Needs pytest-asyncio."""
            raise RuntimeError("the captivate_api fixture needs pytest-asyncio: pip install pytest-asyncio")
