"""CORS for the routes a page on another site calls from the browser: what the npm client (and the Python
SDK's JavaScript twin) fetch with ``x-api-key``, the file service, and signed downloads.

Starlette's ``CORSMiddleware`` answers the preflight (``OPTIONS`` with ``Access-Control-Request-Method``)
and adds the headers to the actual answers, errors included; every other path (the console, the ops and
agent APIs) stays same-origin. Credentials (cookies) are never allowed: the clients send their key in a
header, so ``Access-Control-Allow-Origin: *`` is safe and is the default.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

BROWSER_ROUTES = (
    "/api/custom-channel/sockets/message",  # the HTTP event POST
    "/api/transcript",
    "/api/file-to-text",
    "/api/presigned-url",
)
BROWSER_PREFIXES = (
    "/api/custom-channel/messages/",  # the 413 message_link fallback
    "/files/",  # signed downloads (the URL is the credential)
)
ALLOWED_HEADERS = ("x-api-key", "content-type", "accept")
MAX_AGE = 600
"""Seconds a browser may cache a preflight's answer."""


def is_browser_route(path: str) -> bool:
    return path in BROWSER_ROUTES or path.startswith(BROWSER_PREFIXES)


class BrowserCors:
    """CORS on :data:`BROWSER_ROUTES` for ``origins`` (empty or ``*``: any origin)."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=[origin.rstrip("/") for origin in origins] or ["*"],
            allow_methods=["GET", "POST"],
            allow_headers=list(ALLOWED_HEADERS),
            allow_credentials=False,
            expose_headers=["Retry-After"],
            max_age=MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_browser_route(scope["path"]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
