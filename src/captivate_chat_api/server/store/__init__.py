"""Durable storage behind one interface; :func:`store_from_url` picks the implementation from a URL."""

from __future__ import annotations

from .base import (
    AgentTokenInfo,
    ApiKeyInfo,
    Channel,
    ConversationPage,
    ConversationRecord,
    EditForbidden,
    ListQuery,
    NewEvent,
    Store,
    StoredEvent,
    editable_by,
)


def store_from_url(
    url: str,
    *,
    synchronous: str = "NORMAL",
    busy_timeout: float = 5.0,
    connect_timeout: float = 5.0,
    statement_timeout: float = 10.0,
    acquire_timeout: float = 5.0,
) -> Store:
    """``sqlite:///PATH`` (or a bare path), or ``postgresql://…[?schema=NAME]`` (needs the postgres extra).
    The timeouts (seconds) bound how long a request waits on the store before it fails with 503."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise ValueError(
                "a postgresql:// database needs: pip install 'captivate-chat-api[postgres]'"
            ) from exc
        return PostgresStore(
            url,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            acquire_timeout=acquire_timeout,
        )
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

    return SQLiteStore(path or ":memory:", synchronous=synchronous, busy_timeout=busy_timeout)


__all__ = [
    "AgentTokenInfo",
    "ApiKeyInfo",
    "Channel",
    "ConversationPage",
    "ConversationRecord",
    "EditForbidden",
    "ListQuery",
    "NewEvent",
    "Store",
    "StoredEvent",
    "editable_by",
    "store_from_url",
]
