from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from captivate_chat_api.server.store import Store, store_from_url


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = store_from_url(database_url)
    await opened.open()
    yield opened
    await opened.close()
