"""Run the gateway under uvicorn, with a shutdown that closes sockets with 1001 so clients reconnect."""

from __future__ import annotations

import gc
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .client_socket import ClientSockets
from .connections import uvicorn_options
from .fastpath import HotPosts
from .hub import CLOSE_GOING_AWAY
from .logs import flush_logs
from .settings import Settings
from .startup import StartupError


def settle_heap() -> None:
    """After start-up: move what exists now (modules, settings, caches) out of the collector's sight
    (``gc.freeze``) and let more objects accumulate before a young collection, so per-message garbage does not
    make the collector walk the whole heap again and again (full collections of ~0.1 s under load)."""
    gc.collect()
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], GC_YOUNG_THRESHOLD), *threshold[1:])


GC_YOUNG_THRESHOLD = 20_000


class GatewayServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        app: FastAPI,
        on_ready: Callable[[str, int], None] | None,
        *,
        own_process: bool = False,
    ) -> None:
        super().__init__(config)
        self._app = app
        self._on_ready = on_ready
        self._own_process = own_process
        """The process is the gateway's alone (``serve``, a worker), not a test or an embedding app."""
        self.ready_error: Exception | None = None

    async def _serve(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super()._serve(sockets)
        finally:
            # the last iteration's log lines, while the loop still runs: once it ends, uvicorn raises again
            # the signal it stopped on (SIGTERM), which ends the process without ``logging.shutdown``
            flush_logs()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._own_process:  # the collector is ours to tune
            settle_heap()
        if self.started and self._on_ready is not None:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            try:
                self._on_ready(host, port)
            except Exception as exc:  # noqa: BLE001 -- stop cleanly; run() hands the error to the caller (one line there)
                self.ready_error = exc
                self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn would close WebSockets with 1012; 1001 (going away) is what clients treat as "reconnect".
        # Stop accepting first: closing a socket can take seconds (a peer that stopped reading), and a client
        # reconnecting meanwhile must not land on a gateway that is going away.
        for server in self.servers:
            server.close()
        gateway = getattr(self._app.state, "gateway", None)
        if gateway is not None:
            await gateway.hub.close_all(CLOSE_GOING_AWAY, "server shutting down")
        await super().shutdown(sockets)


def run(
    settings: Settings, on_ready: Callable[[str, int], None] | None = None, sock: socket.socket | None = None
) -> None:
    """Serve until stopped; ``sock`` is the listening socket bound beforehand (:func:`.startup.bind`).

    Raises StartupError when the app could not start (uvicorn has logged why).
    """
    app = create_app(settings)
    server = GatewayServer(config_for(settings, app), app, on_ready, own_process=True)
    try:
        server.run(sockets=[sock] if sock is not None else None)
    finally:
        flush_logs()  # the last iteration's lines, before whatever is printed next
    if server.ready_error is not None:
        raise server.ready_error
    if not server.started:
        raise StartupError("the gateway's start-up failed (the log above says why; --debug shows more)")


def config_for(
    settings: Settings,
    app: Any,
    *,
    gateway_app: FastAPI | None = None,
    handshake_headers: tuple[tuple[str, str], ...] = (),
) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` (the FastAPI app, or an ASGI app wrapping ``gateway_app``, which
    then names the FastAPI app); ``/dev`` sockets are served by :class:`.client_socket.ClientSocket`, their
    101 with ``handshake_headers`` added, and client-event POSTs by :class:`.fastpath.HotPost`, their
    answers with ``handshake_headers`` added (as every response of the wrapping app: a worker's name)."""
    owner = gateway_app if gateway_app is not None else app
    state = getattr(owner, "state", None)
    sockets = (
        ClientSockets(lambda: getattr(state, "gateway", None), handshake_headers)
        if state is not None
        else None
    )
    posts = (
        HotPosts(owner, access_log=settings.access_log, extra_headers=handshake_headers)
        if state is not None and hasattr(owner, "exception_handlers")
        else None
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws_max_size=settings.max_frame_bytes,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        log_config=None,
        access_log=False,
        # seconds, fractions kept (uvicorn waits with asyncio.wait_for; int() made a 0.9 s grace 0 s)
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,  # type: ignore[arg-type]  # a float works
        lifespan="on",
        # head/handshake deadline, connection cap, fd limit, /dev sockets, client-event POSTs
        **uvicorn_options(settings, sockets, posts),
    )
