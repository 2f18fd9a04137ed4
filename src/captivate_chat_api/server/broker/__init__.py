"""Brokers: how gateway processes tell each other what happened (python-socketio's pub/sub manager, in spirit).

Without a broker a gateway is one process and its hub is the whole world. With one (``--broker
redis://…``), every process publishes what its sockets elsewhere must learn — stored events, bindings,
direct replies — and delivers what others publish to its own sockets. Pub/sub is at-most-once, so the
store stays the source of truth: a process that missed messages catches up from it by ``seq``.
"""

from __future__ import annotations

from .base import Broker, BrokerMessage, MessageHandler, ResyncHandler


def broker_from_url(url: str, namespace: str = "captivate-chat") -> Broker:
    """The broker at ``url``; ``namespace`` prefixes every name it uses (one per deployment)."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            from .redis import RedisBroker
        except ImportError as exc:
            raise ValueError("a redis:// broker needs: pip install 'captivate-chat-api[redis]'") from exc
        return RedisBroker(url, namespace)
    raise ValueError(f"unsupported broker URL {url.split('://', 1)[0]!r} (supported: redis)")


def default_namespace(database_url: str) -> str:
    """A deployment's broker namespace when none is set: derived from its database (host, port, user,
    database and schema; never the password), so the gateways of one deployment share it and two
    deployments on one Redis do not."""
    import hashlib
    from urllib.parse import urlsplit

    parts = urlsplit(database_url)
    where = f"{parts.username or ''}@{parts.hostname or ''}:{parts.port or ''}"
    identity = f"{parts.scheme}://{where}{parts.path}?{parts.query}"
    return "captivate-chat:" + hashlib.sha256(identity.encode()).hexdigest()[:12]


__all__ = [
    "Broker",
    "BrokerMessage",
    "MessageHandler",
    "ResyncHandler",
    "broker_from_url",
    "default_namespace",
]
