"""The protocol layer raises :class:`ProtocolError` (defined with the rest of the hierarchy in ``errors``)."""

from __future__ import annotations

from ..errors import ProtocolError

__all__ = ["ProtocolError"]
