from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from browser_kit import chromium
from playwright.async_api import Browser


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shared_chromium() -> AsyncIterator[Browser]:
    """One Chromium for a test process (a launch, with Playwright's driver, is ~2 CPU-s), started by the
    first web test that asks for it and shared by every web module the process runs. The web tests run on
    the session's event loop: ``pytestmark = pytest.mark.asyncio(loop_scope="session")``."""
    async with chromium() as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def browser(shared_chromium: Browser) -> AsyncIterator[Browser]:
    """The shared Chromium for one test: it opens its own contexts (``open_tab``: own cookies and
    localStorage), and they are closed when it ends, so no page of a finished test keeps running (or keeps
    reconnecting to a gateway that was stopped) while the next ones do."""
    yield shared_chromium
    for context in shared_chromium.contexts:
        await context.close()
