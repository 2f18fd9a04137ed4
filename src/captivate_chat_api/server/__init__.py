"""The self-hostable gateway (needs the ``server`` extra): ``create_app(settings)`` or ``captivate-chat serve``."""

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
