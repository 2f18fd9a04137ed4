"""The one error the protocol layer raises: what is wrong with an envelope, as the wire reports it."""

from __future__ import annotations


class ProtocolError(Exception):
    """A client event that cannot be served.

    ``error_code`` is HTTP-like (400 bad input, 401/403 auth, 404 unknown conversation, 409 conflict,
    413 too large, 429 rate limited) because the npm client compares it as a number (413 fallback).
    """

    def __init__(self, error_code: int, error_desc: str, conversation_id: str | None = None) -> None:
        super().__init__(error_desc)
        self.error_code = error_code
        self.error_desc = error_desc
        self.conversation_id = conversation_id

    def to_body(self) -> dict[str, object]:
        """The HTTP JSON body ``{error_code, error_desc}``."""
        return {"error_code": self.error_code, "error_desc": self.error_desc}

    def __repr__(self) -> str:
        return f"ProtocolError({self.error_code}, {self.error_desc!r})"
