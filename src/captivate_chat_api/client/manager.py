"""``CaptivateChatManager``: several API keys (channels) side by side, one client each."""

from __future__ import annotations

from typing import Any, Self

from .api import CaptivateChatAPI
from .conversation import UserConversations
from .endpoints import Mode


class CaptivateChatManager:
    """One :class:`CaptivateChatAPI` per distinct key, with a listing across all of them.

    Keyword arguments (``base_url``, ``transport`` …) are passed to every client.
    """

    def __init__(self, api_keys: list[str], mode: Mode = "prod", **options: Any) -> None:
        if not api_keys:
            raise ValueError("at least one API key is required")
        self.apis: dict[str, CaptivateChatAPI] = {}
        for key in dict.fromkeys(api_keys):  # de-duplicated, order kept
            self.apis[key] = CaptivateChatAPI(key, mode, **options)
        for api in self.apis.values():
            api._peers.update(self.apis)  # a listing routes each conversation to its key's client

    @classmethod
    async def create(cls, api_keys: list[str], mode: Mode = "prod", **options: Any) -> CaptivateChatManager:
        manager = cls(api_keys, mode, **options)
        await manager.connect_all()
        return manager

    async def __aenter__(self) -> Self:
        await self.connect_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def get_api(self, api_key: str) -> CaptivateChatAPI:
        return self.apis[api_key]

    async def connect_all(self) -> None:
        for api in self.apis.values():
            await api.connect()

    async def close(self) -> None:
        for api in self.apis.values():
            await api.close()

    async def get_user_conversations(
        self,
        user_id: str,
        *,
        api_keys: list[str] | None = None,
        filter: dict[str, Any] | None = None,
        search: dict[str, Any] | None = None,
        pagination: dict[str, int | str] | None = None,
    ) -> UserConversations:
        """One listing over several keys (all of which the platform checks), through the first key's client;
        each conversation is attached to its own key's client (as npm does with each item's ``apiKey``)."""
        keys = api_keys or list(self.apis)
        return await self.apis[keys[0]].get_user_conversations(
            user_id, filter=filter, search=search, pagination=pagination, api_keys=keys
        )
