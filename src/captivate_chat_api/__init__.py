"""Captivate Chat for Python: an async client SDK for the custom-channel protocol (with a blocking facade in
``captivate_chat_api.sync``), and, with the ``server`` extra, a self-hostable gateway."""

from __future__ import annotations

from importlib import import_module as _import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the eager imports, for type checkers and IDEs
    __version__: str
    from .client import (
        CaptivateChatAPI,
        ConnectionState,
        Conversation,
        ConversationUpdateInfo,
        ErrorInfo,
        FileInput,
        FileManager,
        PageInfo,
        ReconnectPolicy,
        SentMessage,
        UploadProgress,
        UserConversations,
    )
    from .client.conversation import EventStream
    from .client.manager import CaptivateChatManager
    from .errors import (
        AgentError,
        AuthenticationError,
        CaptivateChatError,
        ChatConnectionError,
        ClientClosedError,
        ConversationNotFound,
        HandoffConflict,
        NotFoundError,
        PayloadTooLargeError,
        ProtocolError,
        RateLimitError,
        RequestTimeoutError,
        ServerError,
        WebhookVerificationError,
    )
    from .protocol import (
        Action,
        BotMessage,
        ConversationUpdate,
        GeneralError,
        LivechatMessage,
        PlatformEvent,
        TranscriptEntry,
        UserActionEcho,
        UserMessageEcho,
    )
    from .protocol.attachments import FileObject, FileStorage

# Names import their module on first use (PEP 562): `import captivate_chat_api` (and every CLI,
# gateway or example process, which all import the package first) loads none of the SDK until a name is used.
_EXPORTS = {
    "Action": ".protocol",
    "AgentError": ".errors",
    "AuthenticationError": ".errors",
    "BotMessage": ".protocol",
    "CaptivateChatAPI": ".client",
    "CaptivateChatError": ".errors",
    "CaptivateChatManager": ".client.manager",
    "ChatConnectionError": ".errors",
    "ClientClosedError": ".errors",
    "ConnectionState": ".client",
    "Conversation": ".client",
    "ConversationNotFound": ".errors",
    "ConversationUpdate": ".protocol",
    "ConversationUpdateInfo": ".client",
    "ErrorInfo": ".client",
    "EventStream": ".client.conversation",
    "FileInput": ".client",
    "FileManager": ".client",
    "FileObject": ".protocol.attachments",
    "FileStorage": ".protocol.attachments",
    "GeneralError": ".protocol",
    "HandoffConflict": ".errors",
    "LivechatMessage": ".protocol",
    "NotFoundError": ".errors",
    "PageInfo": ".client",
    "PayloadTooLargeError": ".errors",
    "PlatformEvent": ".protocol",
    "ProtocolError": ".errors",
    "RateLimitError": ".errors",
    "ReconnectPolicy": ".client",
    "RequestTimeoutError": ".errors",
    "SentMessage": ".client",
    "ServerError": ".errors",
    "TranscriptEntry": ".protocol",
    "UploadProgress": ".client",
    "UserActionEcho": ".protocol",
    "UserConversations": ".client",
    "UserMessageEcho": ".protocol",
    "WebhookVerificationError": ".errors",
}


__all__ = [
    "Action",
    "AgentError",
    "AuthenticationError",
    "BotMessage",
    "CaptivateChatAPI",
    "CaptivateChatError",
    "CaptivateChatManager",
    "ChatConnectionError",
    "ClientClosedError",
    "ConnectionState",
    "Conversation",
    "ConversationNotFound",
    "ConversationUpdate",
    "ConversationUpdateInfo",
    "ErrorInfo",
    "EventStream",
    "FileInput",
    "FileManager",
    "FileObject",
    "FileStorage",
    "GeneralError",
    "HandoffConflict",
    "LivechatMessage",
    "NotFoundError",
    "PageInfo",
    "PayloadTooLargeError",
    "PlatformEvent",
    "ProtocolError",
    "RateLimitError",
    "ReconnectPolicy",
    "RequestTimeoutError",
    "SentMessage",
    "ServerError",
    "TranscriptEntry",
    "UploadProgress",
    "UserActionEcho",
    "UserConversations",
    "UserMessageEcho",
    "WebhookVerificationError",
    "__version__",
]


def _version() -> str:
    """The one version source is pyproject.toml, read from the installed package's metadata."""
    from importlib import metadata

    try:
        return metadata.version("captivate-chat-api")
    except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":  # importlib.metadata alone costs more than the rest of the package
        globals()[name] = value = _version()
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
