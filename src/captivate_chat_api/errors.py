"""One exception hierarchy for the whole package.

::

    CaptivateChatError
    ├── ProtocolError              a malformed or refused event (carries error_code / error_desc)
    │   ├── AuthenticationError    401/403: missing, wrong or revoked API key
    │   ├── NotFoundError          404: unknown, deleted or foreign conversation or message
    │   │   ├── ConversationNotFound   404: the conversation (its id in ``conversation_id``)
    │   │   └── MessageNotFound        404: a message of a known conversation
    │   ├── HandoffConflict        409: a hand-off step not allowed from the conversation's state
    │   ├── PayloadTooLargeError   413
    │   ├── RateLimitError         429 (``retry_after`` seconds when the platform said)
    │   └── ServerError            5xx
    ├── ChatConnectionError        the WebSocket or HTTP connection could not be made or was lost
    ├── RequestTimeoutError        no answer within the configured timeout
    ├── ClientClosedError          the client was closed
    ├── AgentError                 (gateway) the agent could not answer: the client gets a general_error
    └── WebhookVerificationError   a webhook request's signature or timestamp does not check out

Names never shadow Python's builtins (``ConnectionError``, ``TimeoutError``).
"""

from __future__ import annotations


class CaptivateChatError(Exception):
    """Root of every error this package raises."""


class ProtocolError(CaptivateChatError):
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

    def __str__(self) -> str:
        return f"{self.error_code}: {self.error_desc}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error_code}, {self.error_desc!r})"


class AuthenticationError(ProtocolError):
    pass


class NotFoundError(ProtocolError):
    pass


class ConversationNotFound(NotFoundError, LookupError):
    """The conversation does not exist, was deleted, or belongs to another channel.

    Also a :class:`LookupError`, so code that still catches that keeps working.
    """

    def __init__(self, conversation_id: str | None, error_desc: str = "conversation not found") -> None:
        super().__init__(404, error_desc, conversation_id)


class MessageNotFound(NotFoundError):
    """No message with that id in the conversation (or the message is not one that can be served)."""

    def __init__(self, conversation_id: str | None, error_desc: str = "message not found") -> None:
        super().__init__(404, error_desc, conversation_id)


class HandoffConflict(ProtocolError):
    """The hand-off step ``name`` is not allowed from the conversation's ``state`` (or another human owns it)."""

    def __init__(
        self, name: str, state: str, conversation_id: str | None = None, *, by_other: bool = False
    ) -> None:
        owned = " by another human agent" if by_other and state == "human" else ""
        super().__init__(
            409, f"cannot {name.replace('_', ' ')}: the conversation is {state}{owned}", conversation_id
        )
        self.name = name
        self.state = state
        self.by_other = by_other
        """True when the asker is a human agent other than the one who has the live chat."""

    def __str__(self) -> str:
        return self.error_desc


class PayloadTooLargeError(ProtocolError):
    pass


class RateLimitError(ProtocolError):
    def __init__(
        self,
        error_code: int,
        error_desc: str,
        conversation_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(error_code, error_desc, conversation_id)
        self.retry_after = retry_after


class ServerError(ProtocolError):
    pass


class ChatConnectionError(CaptivateChatError):
    pass


class RequestTimeoutError(CaptivateChatError):
    pass


class ClientClosedError(CaptivateChatError):
    pass


class AgentError(CaptivateChatError):
    """The agent could not answer; the client gets a ``general_error`` with ``error_code``."""

    def __init__(self, error_desc: str, error_code: int = 502) -> None:
        super().__init__(error_desc)
        self.error_code = error_code
        self.error_desc = error_desc


class WebhookVerificationError(CaptivateChatError):
    """A webhook request is not from the gateway: missing or wrong signature, or a stale timestamp."""


def error_for_status(
    status: int, error_desc: str, conversation_id: str | None = None, retry_after: float | None = None
) -> ProtocolError:
    """The most specific :class:`ProtocolError` for an HTTP-like status code."""
    if status in (401, 403):
        return AuthenticationError(status, error_desc, conversation_id)
    if status == 404:
        return NotFoundError(status, error_desc, conversation_id)
    if status == 413:
        return PayloadTooLargeError(status, error_desc, conversation_id)
    if status == 429:
        return RateLimitError(status, error_desc, conversation_id, retry_after)
    if status >= 500:
        return ServerError(status, error_desc, conversation_id)
    return ProtocolError(status, error_desc, conversation_id)
