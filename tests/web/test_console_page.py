"""The agent console's own bookkeeping, in real Chromium against a real gateway process: what it shows when
the socket and an HTTP read of the same conversation cross."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from browser_kit import open_tab
from playwright.async_api import Browser, Route, WebSocket, expect

from harness.gateway import GatewayProcess
from harness.tokens import add_token
from harness.wire import MESSAGE_PATH, envelope, tls

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_message_that_comes_while_the_console_reads_the_conversation_is_shown_once(
    browser: Browser, gateway: GatewayProcess, api_key: str
) -> None:
    token = await add_token(gateway.database, api_key, "human", "Grace")
    async with httpx.AsyncClient(
        verify=tls(), base_url=gateway.http_url, headers={"x-api-key": api_key}, timeout=10
    ) as http:

        async def say(text: str, msg_id: str) -> None:
            payload = {"conversation_id": cid, "type": "message_create", "client_msg_id": msg_id}
            said = await http.post(
                MESSAGE_PATH,
                json=envelope("user_message", {**payload, "content": {"type": "text", "text": text}}),
            )
            assert said.status_code == 200, said.text

        start = await http.post(
            MESSAGE_PATH, json=envelope("conversation_start", {"userId": "visitor-lin", "userBasicInfo": {}})
        )
        cid = start.json()["conversation_id"]
        await say("human", "m1")  # the demo agent hands the conversation to a human

        tab = await open_tab(browser, gateway.http_url, width=1200, height=720)
        page = tab.page
        await page.goto(f"{gateway.http_url}/console")
        await page.fill("#token", token)
        await page.fill("#agent-name", "Grace")
        await page.get_by_role("button", name="Sign in").click()
        await page.locator("#waiting .queue__item").click()
        await page.get_by_role("button", name="Take conversation").click()
        await expect(page.locator("#c-state")).to_have_text("Live · Grace")

        # after a reload the console reads the conversation again, and its new socket follows it from that
        # read on; the read's answer is held until the socket has brought a message stored after the read
        answered, delivered = asyncio.Event(), asyncio.Event()

        async def answer_late(route: Route) -> None:
            response = await route.fetch()
            answered.set()
            await delivered.wait()
            await route.fulfill(response=response)

        def watch(socket: WebSocket) -> None:
            socket.on("framereceived", lambda data: "Still there?" in str(data) and delivered.set())

        await page.route(re.compile(rf"/api/agent/conversations/{cid}\?socket_id="), answer_late)
        page.on("websocket", watch)
        await page.reload()
        await asyncio.wait_for(answered.wait(), 20)
        await say("Still there?", "m2")
        await asyncio.wait_for(delivered.wait(), 20)

        bubbles = page.locator("#transcript .row--user .bubble")
        await expect(bubbles.last).to_have_text("Still there?")
        await expect(bubbles.filter(has_text="Still there?")).to_have_count(1)
        assert tab.errors == []
