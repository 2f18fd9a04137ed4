"""Create agent tokens in a gateway's database (as ``captivate-chat tokens create`` does)."""

from __future__ import annotations

import secrets
from pathlib import Path

from captivate_chat_api.server.keys import hash_key
from captivate_chat_api.server.store import store_from_url


async def add_token(database: Path | str, api_key: str, role: str, label: str = "") -> str:
    """``database``: a SQLite file, or a store URL (``postgresql://…``, ``sqlite:///…``)."""
    url = database if isinstance(database, str) and "://" in database else f"sqlite:///{database}"
    store = store_from_url(url)
    await store.open()
    try:
        channel = await store.channel_for_key_hash(hash_key(api_key))
        assert channel is not None, "unknown key"
        token = f"cca_{secrets.token_urlsafe(24)}"
        await store.add_agent_token(channel.id, hash_key(token), token[:10], role, label)
        return token
    finally:
        await store.close()
