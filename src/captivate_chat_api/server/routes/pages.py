"""The web pages: the chat at ``/``, the human agents' console at ``/console``, their assets under
``/static/``, and ``/widget.js`` (the one-tag embed). Plain files shipped in the package: no build step.

The chat page may be framed by any site (the widget does exactly that); the console may not.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

STATIC = Path(__file__).resolve().parent.parent / "static"

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

# Agent content may link images from anywhere; scripts, styles and sockets only from the gateway itself.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: http: data:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'"
)
_COMMON = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # the chat URL may carry ?key=: never hand it to the sites that messages link to
    "Referrer-Policy": "no-referrer",
}
CHAT_HEADERS = {**_COMMON, "Content-Security-Policy": _CSP}
CONSOLE_HEADERS = {
    **_COMMON,
    "Content-Security-Policy": _CSP + "; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}
ASSET_HEADERS = {**_COMMON, "Cross-Origin-Resource-Policy": "cross-origin"}

router = APIRouter(include_in_schema=False)


def asset(relative: str, headers: dict[str, str]) -> FileResponse:
    """A file under ``static/``; 404 for anything outside it or of a type not served."""
    try:
        path = (STATIC / relative).resolve()
        found = path.is_relative_to(STATIC) and path.is_file()
    except (ValueError, OSError):  # an embedded NUL, a name too long: no such file
        raise HTTPException(404, "not found") from None
    media_type = MEDIA_TYPES.get(path.suffix)
    if media_type is None or not found:
        raise HTTPException(404, "not found")
    return FileResponse(path, media_type=media_type, headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
async def chat_page() -> FileResponse:
    """The web chat (``?key=API_KEY`` or ``#key=``, stored in the browser; ``?start=user`` for user-first)."""
    return asset("chat.html", CHAT_HEADERS)


@router.api_route("/console", methods=["GET", "HEAD"])
async def console_page() -> FileResponse:
    """The human agents' console (signs in with a ``human`` agent token)."""
    return asset("console.html", CONSOLE_HEADERS)


@router.api_route("/widget.js", methods=["GET", "HEAD"])
async def widget() -> FileResponse:
    """``<script src="http://HOST:PORT/widget.js" data-api-key="KEY"></script>``: a chat launcher for any site."""
    return asset("widget.js", ASSET_HEADERS)


@router.api_route("/static/{relative:path}", methods=["GET", "HEAD"])
async def static_file(relative: str) -> FileResponse:
    return asset(relative, ASSET_HEADERS)
