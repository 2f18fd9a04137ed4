"""Real Chromium (Debian's ``chromium`` package) driven by Playwright, for the web pages' tests.

Playwright never downloads a browser here: it launches the system Chromium by path. Every page may reach
the gateway under test and nothing else (requests elsewhere are aborted). Screenshots go to
``tests/web/artifacts/`` (ignored by git); look at them.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from harness.gateway import in_ci

CHROMIUM = os.environ.get("CAPTIVATE_CHROMIUM", "/usr/bin/chromium")
HEADLESS_SHELL = Path("/usr/lib/chromium/chromium-headless-shell")
"""Debian's ``chromium-headless-shell``: Chromium's headless-only build (the same Blink and V8, no browser
window code), which is what Playwright itself launches for ``headless=True``. The web tests take ~25 % less
CPU on it than on the full browser (34.5 → 26 CPU-s for ``tests/web``). Preferred when it is installed."""
DEBIAN_BINARY = Path("/usr/lib/chromium/chromium")
"""What Debian's ``/usr/bin/chromium`` shell launcher execs, after sourcing ``/etc/chromium.d`` (GPU
rasterization, remote extensions, ``--load-extension``: nothing a headless test uses). Launched directly
when it is there; the page, the engine and its switches below are the same."""
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--in-process-gpu",  # the software compositor as a thread of the browser, not one more process (~0.5 CPU-s)
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OFF = ["WebUIOmniboxPopup", "WebUIOmniboxAimPopup"]
"""Features turned off on top of Playwright's own: the address bar's drop-down, a WebUI renderer Chromium
156 preloads for every window, i.e. every browser context (~0.7 CPU-s each), is browser chrome a headless
run never shows; pages are unaffected."""
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TIMEOUT_MS = 20_000  # a ceiling for waiting on what a person would see, not a speed requirement

expect.set_options(timeout=TIMEOUT_MS)


def chromium_path() -> str:
    """The system Chromium (its headless shell when installed); missing is a skip on a developer machine
    and a failure under CI."""
    if CHROMIUM == "/usr/bin/chromium":
        for binary in (HEADLESS_SHELL, DEBIAN_BINARY):
            if binary.exists():
                return str(binary)
    if Path(CHROMIUM).exists():
        return CHROMIUM
    message = f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Tab:
    """A page in its own browser context (its own localStorage), and the script errors it raised."""

    page: Page
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def save_console(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(self.console) + "\n")

    async def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path))
        return path


def playwright_disabled_features() -> list[str] | None:
    """The features Playwright's own ``--disable-features`` switch turns off (``disabledFeatures`` in its
    driver), or None when they cannot be read."""
    import playwright

    bundle = Path(playwright.__file__).parent / "driver" / "package" / "lib" / "coreBundle.js"
    try:
        source = bundle.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = re.search(r"disabledFeatures = \[(.*?)\]\.filter\(Boolean\)", source, re.DOTALL)
    if found is None:
        return None
    names = re.findall(r'^\s*"(\w+)",?\s*$', found.group(1), re.MULTILINE)
    return names or None


def launch_options() -> dict[str, Any]:
    """Chromium's switches: ``ARGS``, and ``OFF`` added to Playwright's ``--disable-features`` (Chromium
    keeps only the last of a repeated switch, so the two lists go in one; if Playwright's cannot be read,
    its own switch stays and ``OFF`` is left out)."""
    defaults = playwright_disabled_features()
    if defaults is None:
        return {"args": ARGS}
    return {
        "args": [*ARGS, "--disable-features=" + ",".join([*defaults, *OFF])],
        "ignore_default_args": ["--disable-features=" + ",".join(defaults)],
    }


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    path = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, headless=True, **launch_options())
        try:
            yield browser
        finally:
            await browser.close()


async def open_tab(browser: Browser, allowed: str, *, width: int = 480, height: int = 760) -> Tab:
    """A new context whose requests may only go to URLs starting with ``allowed``: every other request is
    aborted. The pattern is a regular expression, so Playwright's driver matches each request itself and
    only the aborted ones come to this process (a catch-all handler here was a round trip through Python
    for every page, script, upload and API call)."""
    context = await browser.new_context(
        viewport={"width": width, "height": height}, device_scale_factor=1, reduced_motion="reduce"
    )
    context.set_default_timeout(TIMEOUT_MS)

    async def abort(route: Route) -> None:
        await route.abort()

    await context.route(re.compile("^(?!" + re.escape(allowed) + ")"), abort)
    tab = Tab(await context.new_page())
    tab.page.on("pageerror", lambda error: tab.errors.append(str(error)))
    tab.page.on("console", lambda message: tab.console.append(f"{message.type}: {message.text}"))
    return tab
