"""Captivate Chat for Python: an async client SDK for the custom-channel protocol (with a blocking facade in
``captivate_chat_api.sync``), and, with the ``server`` extra, a self-hostable gateway."""

from .client import (
    CaptivateChatAPI,
    ConnectionState,
    Conversation,
    ConversationUpdateInfo,
    ErrorInfo,
    PageInfo,
    ReconnectPolicy,
    SentMessage,
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

__version__ = "0.1.0"

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
    "UserActionEcho",
    "UserConversations",
    "UserMessageEcho",
    "WebhookVerificationError",
    "__version__",
]
