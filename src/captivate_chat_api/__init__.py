"""Captivate Chat for Python: an async client SDK for the custom-channel protocol (with a blocking facade in
``captivate_chat_api.sync``), and, with the ``server`` extra, a self-hostable gateway."""

from importlib import metadata as _metadata

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

try:  # the one version source is pyproject.toml, read from the installed package's metadata
    __version__ = _metadata.version("captivate-chat-api")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

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
