from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from captivate_chat_api import CaptivateChatAPI
from harness.gateway import GatewayProcess


@pytest.fixture(params=["http", "websocket"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def api(gateway: GatewayProcess, api_key: str, transport: str) -> AsyncIterator[CaptivateChatAPI]:
    async with CaptivateChatAPI(api_key, base_url=gateway.http_url, transport=transport) as client:  # type: ignore[arg-type]
        yield client


@pytest.fixture
def user_id() -> str:
    return f"sdk-{uuid.uuid4().hex[:8]}"
