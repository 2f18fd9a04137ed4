"""Where the client talks to: the Captivate cloud (``mode``) or a gateway (``base_url``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Mode = Literal["prod", "dev"]

CLOUD = {
    "prod": ("wss://channel.wss.captivatechat.ai/dev", "https://channel.prod.captivat.io"),
    "dev": ("wss://channel-dev.wss.captivatechat.ai/dev", "https://channel.dev.captivat.io"),
}
CLOUD_FILES = "https://file-to-text.prod.captivat.io"


@dataclass(frozen=True, slots=True)
class Endpoints:
    ws_url: str
    """WebSocket URL without the ``apiKey`` query parameter."""
    http_base: str
    files_base: str
    is_gateway: bool
    """A gateway of ours: it sends ``seq`` and serves ``subscribe`` (the cloud does neither)."""

    @classmethod
    def resolve(cls, mode: Mode = "prod", base_url: str | None = None) -> Endpoints:
        if base_url is None:
            if mode not in CLOUD:
                raise ValueError(f"mode must be 'prod' or 'dev', not {mode!r}")
            ws_url, http_base = CLOUD[mode]
            return cls(ws_url, http_base, CLOUD_FILES, is_gateway=False)
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https"):
            raise ValueError("base_url must start with http:// or https://")
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        http_base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        ws_url = urlunsplit((ws_scheme, parts.netloc, parts.path + "/dev", "", ""))
        return cls(ws_url, http_base, http_base, is_gateway=True)
