"""The async client SDK."""

from .api import CaptivateChatAPI
from .backoff import ReconnectPolicy
from .conversation import Conversation, UserConversations
from .endpoints import Endpoints
from .models import ConversationUpdateInfo, ErrorInfo, PageInfo, SentMessage
from .state import ConnectionState

__all__ = [
    "CaptivateChatAPI",
    "ConnectionState",
    "Conversation",
    "ConversationUpdateInfo",
    "Endpoints",
    "ErrorInfo",
    "PageInfo",
    "ReconnectPolicy",
    "SentMessage",
    "UserConversations",
]
