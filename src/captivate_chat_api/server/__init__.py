"""The self-hostable gateway (needs the ``server`` extra): ``create_app(settings)`` or ``captivate-chat serve``.

Names are imported lazily so that the CLI's light commands (keys, tokens, chat) do not load FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(name)
