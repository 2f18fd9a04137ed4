"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..protocol import ProtocolError
from .agents import Agent
from .gateway import Gateway
from .metrics import Metrics, MetricsMiddleware
from .routes import agent_api, files, http, ops, pages, push, ws
from .settings import Settings

log = logging.getLogger("captivate_chat_api.server")
access_log = logging.getLogger("captivate_chat_api.access")


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
            access_log.info(
                '%s %s %d %.1fms', scope["method"], scope["path"], status, (time.perf_counter() - started) * 1000
            )


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
        try:
            yield
        finally:
            if app.state.files is not None:
                await app.state.files.close()
            await gateway.stop()

    app = FastAPI(title="Captivate Chat gateway", version="0.1.0", lifespan=lifespan)
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

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = http.describe_hot_routes(get_openapi(title=app.title, version=app.version, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    if settings.access_log:
        app.add_middleware(AccessLog)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
