"""The hot HTTP route, served at the top of the ASGI app: the client-event POST.

Every message sent over HTTP goes through it, so it skips what every other route gets from the
Starlette/FastAPI stack (a dozen middleware and routing layers per request) and does itself the parts of it
that apply: the error answers of the app's exception handlers, the error counts of
:class:`.metrics.MetricsMiddleware`, the access log line, and the NUL refusal (a request whose query holds a
NUL goes down the stack, where :class:`.app.RefuseNul` answers it); a POST from a browser page (it has an
``Origin``) goes down the stack too, for its CORS headers. Everything else goes down the stack unchanged.
The other hot route, the ``/dev`` WebSocket, is served below ASGI by :class:`.client_socket.ClientSocket`
under ``serve``; over ASGI (the app in-process) it is the router's.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .metrics import Metrics
from .routes.http import MESSAGE_PATH, post_client_event

access_log = logging.getLogger("captivate_chat_api.access")


def _from_browser(scope: Scope) -> bool:
    """A request with an ``Origin`` (a page's fetch) goes down the stack, through :class:`.cors.BrowserCors`."""
    return any(name == b"origin" for name, _ in scope["headers"])


def has_nul(scope: Scope) -> bool:
    """A query holding a NUL: answered down the stack, by :class:`.app.RefuseNul`."""
    query = scope.get("query_string", b"")
    return b"%00" in query or b"\x00" in query


class FastPaths:
    def __init__(self, app: Any, stack: ASGIApp, metrics: Metrics, *, access_log: bool) -> None:
        self.app = app
        """The FastAPI app: its exception handlers answer the POST's errors, as they would down the stack."""
        self.stack = stack
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and get_route_path(scope) == MESSAGE_PATH
            and not has_nul(scope)
            and not _from_browser(scope)
        ):
            await self.post(scope, receive, send)
            return
        await self.stack(scope, receive, send)

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500
        try:
            request = Request(scope, receive)
            try:
                response = await post_client_event(request)
            except Exception as exc:  # noqa: BLE001 -- answered by the app's handler for it, as down the stack
                response = await self._answer(request, exc)
            status = response.status_code
            if status >= 400:
                self.metrics.error("http", status)
            await response(scope, receive, send)
        finally:
            if self.access_log:
                access_log.info(
                    "%s %s %d %.1fms", "POST", scope["path"], status, (time.perf_counter() - started) * 1000
                )

    async def _answer(self, request: Request, exc: Exception) -> Response:
        handlers = self.app.exception_handlers
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                response: Response = await handler(request, exc)
                return response
        raise exc  # pragma: no cover - the app has a handler for Exception
