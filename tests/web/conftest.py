from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from browser_kit import chromium
from playwright.async_api import Browser


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for a module (a launch is ~1 CPU-s); each test still opens its own contexts
    (``open_tab``: own cookies and localStorage). The module's tests run on its event loop:
    ``pytestmark = pytest.mark.asyncio(loop_scope="module")``."""
    async with chromium() as running:
        yield running
