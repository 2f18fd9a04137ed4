"""Durable storage behind one interface; :func:`open_store` picks the implementation from a URL."""

from __future__ import annotations

from .base import (
    AgentTokenInfo,
    ApiKeyInfo,
    Channel,
    ConversationPage,
    ConversationRecord,
    ListQuery,
    NewEvent,
    Store,
    StoredEvent,
)


def store_from_url(url: str, *, synchronous: str = "NORMAL") -> Store:
    """``sqlite:///PATH`` (or a bare path), or ``postgresql://…[?schema=NAME]`` (needs the postgres extra)."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise ValueError("a postgresql:// database needs: pip install 'captivate-chat-api[postgres]'") from exc
        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
    elif url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
    elif "://" not in url:
        path = url
    else:
        raise ValueError(
            f"unsupported database URL scheme: {url.split('://', 1)[0]!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    from .sqlite import SQLiteStore

    return SQLiteStore(path or ":memory:", synchronous=synchronous)


__all__ = [
    "AgentTokenInfo",
    "ApiKeyInfo",
    "Channel",
    "ConversationPage",
    "ConversationRecord",
    "ListQuery",
    "NewEvent",
    "Store",
    "StoredEvent",
    "store_from_url",
]
