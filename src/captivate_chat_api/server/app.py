"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..protocol import ProtocolError
from .agents import Agent
from .connections import trim_after_load
from .cors import BrowserCors
from .fastpath import FastPaths
from .gateway import Gateway
from .logs import log_access
from .metrics import Metrics, MetricsMiddleware
from .routes import agent_api, files, http, ops, pages, push, ws
from .settings import Settings
from .store.faults import FAULT_TYPES, classify

log = logging.getLogger("captivate_chat_api.server")


def error_response(code: int, desc: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "error_desc": desc}, status_code=code)


class AccessLog:
    """One line per HTTP request: method, path (never the query string, which may carry a key), status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            log_access(scope["method"], scope["path"], status, started)


async def open_files(settings: Settings, gateway: Gateway) -> Any:
    """The file service (None without the ``files`` extra: its routes then answer 501 naming it)."""
    from .files import missing_modules

    gateway.handlers.max_files_per_message = settings.files_per_message
    if missing_modules():
        return None
    from .files.service import FileService

    service = await FileService.open(settings, gateway.store)
    service.start_sweeper()
    gateway.handlers.on_hard_delete = service.purge_orphans
    gateway.handlers.fresh_file_urls = service.fresh_urls
    return service


class RefuseNul:
    """A NUL character in a URL (``%00``) names nothing: 404 in the path, 400 in the query; no route sees
    it (PostgreSQL cannot store it, file paths cannot hold it). Bodies are checked by ``decode_json``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = None
            if "\x00" in scope.get("path", ""):
                refusal = (404, "not found")
            elif b"%00" in scope.get("query_string", b"") or b"\x00" in scope.get("query_string", b""):
                refusal = (400, "a query parameter holds a NUL character (%00)")
            if refusal is not None:
                if scope["type"] == "http":
                    await error_response(*refusal)(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, *, agent: Agent | None = None) -> FastAPI:
    """The gateway as an ASGI app; ``agent`` (an async ChatRequest -> AgentResponse callable) replaces the
    channels' configured agents, for embedding and tests."""
    settings = settings or Settings()
    metrics = Metrics()  # per app: several gateways in one process keep separate counts

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = Gateway.build(settings, agent, metrics=metrics)
        await gateway.start()
        app.state.gateway = gateway
        app.state.files = await open_files(settings, gateway)
        trimmer = asyncio.get_running_loop().create_task(
            trim_after_load(lambda: len(gateway.hub.connections()))
        )
        try:
            yield
        finally:
            trimmer.cancel()
            if app.state.files is not None:
                await app.state.files.close()
            await gateway.stop()

    app = FastAPI(title="Captivate Chat gateway", version=__version__, lifespan=lifespan)
    app.state.metrics = metrics
    app.router.routes.extend(http.hot_routes())
    app.include_router(http.router)
    app.include_router(ws.router)
    app.include_router(push.router)
    app.include_router(agent_api.router)
    app.include_router(ops.router)
    app.include_router(files.router)
    app.include_router(pages.router)

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError) -> JSONResponse:
        response = JSONResponse(exc.to_body(), status_code=exc.error_code)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, f"{where}: {first.get('msg')}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        response = error_response(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. the Allow of a 405 (RFC 9110)
        return response

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error")

    async def store_fault(request: Request, exc: Exception) -> JSONResponse:
        """507 / 503 (with Retry-After) for a failing store, counted in its episode (store/faults.py)."""
        fault = classify(exc)
        if fault is None:
            return await internal_error(request, exc)
        gateway = getattr(request.app.state, "gateway", None)
        if gateway is not None:
            gateway.faults.record(fault, exc)
        response = error_response(fault.status, fault.desc)
        if fault.retry_after:
            response.headers["Retry-After"] = str(fault.retry_after)
        return response

    for fault_type in FAULT_TYPES:
        app.add_exception_handler(fault_type, store_fault)

    @app.exception_handler(ClientDisconnect)
    async def client_disconnect(request: Request, exc: ClientDisconnect) -> Response:
        # the client went away mid-body: nothing to answer, nothing went wrong here
        log.debug("client disconnected before its body was read: %s %s", request.method, request.url.path)
        return Response(status_code=400)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = http.describe_hot_routes(
                get_openapi(title=app.title, version=app.version, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.add_middleware(RefuseNul)
    if settings.access_log:
        app.add_middleware(AccessLog)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BrowserCors, origins=settings.cors_origins or settings.allowed_origins)  # outermost
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: FastPaths(  # type: ignore[method-assign]
        app, build_stack(), metrics, access_log=settings.access_log
    )
    return app
