"""Captivate Chat: a client SDK for the custom-channel protocol, and (with the ``server`` extra) a gateway."""

from .protocol import ProtocolError

__version__ = "0.1.0"

__all__ = ["ProtocolError", "__version__"]
