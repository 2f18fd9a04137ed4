"""The self-hostable gateway (needs the ``server`` extra): ``create_app(settings)`` or ``captivate-chat serve``.

Names are imported lazily so that the CLI's light commands (keys, tokens, chat) do not load FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import Settings

__all__ = ["Settings", "create_app"]


INSTALL_HINT = "pip install 'captivate-chat-api[server]'"


def __getattr__(name: str) -> Any:
    try:
        if name == "create_app":
            from .app import create_app

            return create_app
        if name == "Settings":
            from .settings import Settings

            return Settings
    except (
        ModuleNotFoundError
    ) as exc:  # a client-only install: say which extra, not "No module named 'fastapi'"
        raise ModuleNotFoundError(
            f"captivate_chat_api.server.{name} needs the server extra ({exc.name} is not installed): {INSTALL_HINT}",
            name=exc.name,
        ) from exc
    raise AttributeError(name)
