"""Captivate Chat for Python: an async client SDK for the custom-channel protocol (with a blocking facade in
``captivate_chat_api.sync``), and, with the ``server`` extra, a self-hostable gateway."""

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
    AuthenticationError,
    CaptivateChatError,
    ChatConnectionError,
    ClientClosedError,
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

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AuthenticationError",
    "BotMessage",
    "CaptivateChatAPI",
    "CaptivateChatError",
    "CaptivateChatManager",
    "ChatConnectionError",
    "ClientClosedError",
    "ConnectionState",
    "Conversation",
    "ConversationUpdate",
    "ConversationUpdateInfo",
    "ErrorInfo",
    "EventStream",
    "FileInput",
    "FileManager",
    "FileObject",
    "FileStorage",
    "GeneralError",
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
