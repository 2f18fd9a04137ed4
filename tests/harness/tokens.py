"""Change a gateway's channels in its database, as the CLI does: agent tokens (``tokens create``) and a
channel's agent (``keys set-agent``)."""

from __future__ import annotations

import secrets
from pathlib import Path

from captivate_chat_api.server.keys import hash_key
from captivate_chat_api.server.store import store_from_url


def _url(database: Path | str) -> str:
    """``database``: a SQLite file, or a store URL (``postgresql://…``, ``sqlite:///…``)."""
    return database if isinstance(database, str) and "://" in database else f"sqlite:///{database}"


async def set_agent(database: Path | str, api_key: str, spec: str) -> None:
    """Give ``api_key``'s channel the agent ``spec`` (``demo``, ``webhook:URL``, ``openai:MODEL``, …)."""
    store = store_from_url(_url(database))
    await store.open()
    try:
        channel = await store.channel_for_key_hash(hash_key(api_key))
        assert channel is not None, "unknown key"
        await store.update_channel(channel.id, agent=spec)
    finally:
        await store.close()


async def add_token(database: Path | str, api_key: str, role: str, label: str = "") -> str:
    """Create an agent token of ``role`` for ``api_key``'s channel; returns the token."""
    store = store_from_url(_url(database))
    await store.open()
    try:
        channel = await store.channel_for_key_hash(hash_key(api_key))
        assert channel is not None, "unknown key"
        token = f"cca_{secrets.token_urlsafe(24)}"
        await store.add_agent_token(channel.id, hash_key(token), token[:10], role, label)
        return token
    finally:
        await store.close()


async def add_keys(database: Path | str, api_keys: list[str]) -> None:
    """Register ``api_keys`` on a running gateway's store, each as its own channel, as ``serve --api-key``
    does at start (a key nobody asked for yet needs no restart: the gateway looks it up on first use)."""
    from captivate_chat_api.server.gateway import register_key

    store = store_from_url(_url(database))
    await store.open()
    try:
        for key in api_keys:
            await register_key(store, key)
    finally:
        await store.close()
