"""The async client SDK."""

from .api import CaptivateChatAPI
from .backoff import ReconnectPolicy
from .conversation import Conversation, UserConversations
from .endpoints import Endpoints
from .files import FileInput, FileManager, UploadProgress
from .models import ConversationUpdateInfo, ErrorInfo, PageInfo, SentMessage
from .state import ConnectionState

__all__ = [
    "CaptivateChatAPI",
    "ConnectionState",
    "Conversation",
    "ConversationUpdateInfo",
    "Endpoints",
    "ErrorInfo",
    "FileInput",
    "FileManager",
    "PageInfo",
    "ReconnectPolicy",
    "SentMessage",
    "UploadProgress",
    "UserConversations",
]
