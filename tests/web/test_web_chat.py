"""The web chat and the agent console in real Chromium, against a real gateway process.

A visitor chats with the demo agent, clicks a button, is handed to a human who answers from the console
(a second browser context), reloads the page, lives through a gateway crash and restart mid-chat, and
gets the AI back when the human ends the live chat. What the pages show is compared with what the
gateway stored: nothing missing, nothing twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_kit import ARTIFACTS, Tab, open_tab
from playwright.async_api import Browser, Page, expect

from harness.gateway import GatewayProcess, new_key
from harness.tokens import add_token
from harness.wire import MESSAGE_PATH, envelope, tls

# one Chromium per test process (tests/web/conftest.py), so the web tests share the session's event loop
pytestmark = pytest.mark.asyncio(loop_scope="session")

VISITOR = "visitor-ada"


class Chat:
    """The chat page as a visitor uses it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.status = page.locator("#status-text")
        self.banner = page.locator("#banner")

    async def say(self, text: str) -> None:
        await self.page.fill("#input", text)
        await self.page.press("#input", "Enter")

    def bubbles(self, sender: str) -> Any:
        return self.page.locator(f"#history .row--{sender} .bubble")

    def notes(self) -> Any:
        return self.page.locator("#history .row--system")

    async def texts(self) -> list[str]:
        return [t.strip() for t in await self.page.locator("#history .row").all_inner_texts()]


class AgentConsole:
    """The console as a human agent uses it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.transcript = page.locator("#transcript")

    async def sign_in(self, token: str, name: str) -> None:
        await self.page.fill("#token", token)
        await self.page.fill("#agent-name", name)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.locator("#status-text")).to_have_text("Live")

    async def reply(self, text: str) -> None:
        await self.page.fill("#reply-input", text)
        await self.page.press("#reply-input", "Enter")


async def ask_for_a_human(http_url: str, key: str, user_id: str, info: dict[str, str]) -> None:
    """A conversation of another visitor, over plain HTTP, that the demo agent hands to a human."""
    async with httpx.AsyncClient(
        verify=tls(), base_url=http_url, headers={"x-api-key": key}, timeout=10
    ) as http:
        start = await http.post(
            MESSAGE_PATH, json=envelope("conversation_start", {"userId": user_id, "userBasicInfo": info})
        )
        cid = start.json()["conversation_id"]
        said = await http.post(
            MESSAGE_PATH,
            json=envelope(
                "user_message",
                {
                    "conversation_id": cid,
                    "type": "message_create",
                    "client_msg_id": "m1",
                    "content": {"type": "text", "text": "human"},
                },
            ),
        )
        assert said.status_code == 200, said.text


async def stored_texts(http_url: str, key: str, conversation_id: str) -> list[tuple[str, str]]:
    """(from, text) of every text message the gateway stored, oldest first."""
    async with httpx.AsyncClient(verify=tls(), timeout=10) as http:
        response = await http.get(
            f"{http_url}/api/transcript",
            params={"conversation_id": conversation_id},
            headers={"x-api-key": key},
        )
    response.raise_for_status()
    out = []
    for entry in response.json()["transcript"]:
        content = entry["content"]
        if isinstance(content, dict) and content.get("type") == "text" and content.get("text"):
            out.append((entry["from"], content["text"]))
    return out


async def test_visitor_and_human_agent_through_handoff_reload_and_gateway_restart(
    browser: Browser, tmp_path: Path
) -> None:
    key, database = new_key(), tmp_path / "gateway.db"
    gateway = GatewayProcess(database, [key]).start()
    before_restart = ""
    tabs: list[Tab] = []
    try:
        token = await add_token(database, key, "human", "Alice")
        visitor = await open_tab(browser, gateway.http_url)
        tabs.append(visitor)
        chat = Chat(visitor.page)
        await visitor.page.goto(f"{gateway.http_url}/?key={key}&user={VISITOR}")

        # bot-first: the agent greets at once; the key left the address bar
        await expect(chat.bubbles("bot").first).to_contain_text("Hello! I am the Captivate Chat demo agent")
        await expect(chat.status).to_have_text("Online")
        assert "key=" not in visitor.page.url

        # a button message: clicking an option sends it as the visitor's message
        await chat.say("buttons")
        await visitor.page.get_by_role("button", name="Maybe").click()
        await expect(chat.bubbles("user").last).to_have_text("Maybe")
        await expect(chat.bubbles("bot").last).to_have_text("You said: Maybe")

        # a table (agent HTML, sanitized) renders as a table
        await chat.say("table")
        await expect(visitor.page.locator("#history .m-table table td").first).to_have_text("1")

        # asking for a human: the page says so
        await chat.say("human")
        await expect(chat.banner).to_have_text("Waiting for a human agent to join…")
        await expect(chat.notes().last).to_have_text("You are being connected to a human agent.")
        conversation_id = await visitor.page.evaluate(
            "JSON.parse(localStorage.getItem('captivate.chat.conversation')).conversation_id"
        )

        # the human agent signs in, sees the visitor waiting, reads and takes the conversation
        agent_tab = await open_tab(browser, gateway.http_url, width=1200, height=720)
        tabs.append(agent_tab)
        agent = AgentConsole(agent_tab.page)
        await agent_tab.page.goto(f"{gateway.http_url}/console")
        await agent.sign_in(token, "Alice")
        waiting = agent_tab.page.locator("#waiting .queue__item", has_text=VISITOR)
        await expect(waiting).to_be_visible()
        await waiting.click()
        await expect(agent.transcript.locator(".row--user .bubble").last).to_have_text("human")
        await expect(agent_tab.page.locator("#info")).to_contain_text("web-chat")  # the metadata
        await agent_tab.page.get_by_role("button", name="Take conversation").click()
        await expect(agent_tab.page.locator("#c-state")).to_have_text("Live · Alice")
        await expect(agent_tab.page.locator("#live .queue__item", has_text=VISITOR)).to_contain_text(
            "with you"
        )

        # the visitor learns it, and the human's messages look like a person's, not the bot's
        await expect(chat.notes().last).to_have_text("Alice joined the conversation.")
        await expect(chat.banner).to_have_text("You are chatting with a human agent.")
        await agent.reply("Hi, I am Alice. How can I help?")
        await expect(chat.bubbles("human").last).to_have_text("Hi, I am Alice. How can I help?")
        await expect(visitor.page.locator("#history .row--human .row__sender").last).to_have_text(
            "Human agent"
        )
        await chat.say("My order is late")
        await expect(agent.transcript.locator(".row--user .bubble").last).to_have_text("My order is late")

        # another visitor asks for a human: the queue updates by itself
        await ask_for_a_human(gateway.http_url, key, "visitor-bob", {"firstName": "Bob", "lastName": "Jones"})
        await expect(agent_tab.page.locator("#waiting .queue__item")).to_contain_text("Bob Jones")
        await expect(agent_tab.page.locator("#waiting-count")).to_have_text("1")
        await visitor.shot("chat-live")
        await agent_tab.shot("console-live")

        # a reload shows the same conversation, in the same state, nothing twice
        before = await chat.texts()
        await visitor.page.reload()
        await expect(chat.status).to_have_text("Online")
        await expect(visitor.page.locator("#history .row")).to_have_count(len(before))
        assert await chat.texts() == before
        await expect(visitor.page.locator("#history .row").last).to_be_in_viewport()  # scrolled to the end
        await expect(chat.banner).to_have_text("You are chatting with a human agent.")

        # the gateway crashes mid-chat; the visitor writes while it is down; it comes back
        port = gateway.port
        gateway.kill()
        before_restart = gateway.logs() + "\n---- restart ----\n"
        await expect(chat.status).to_have_text("Connection lost · reconnecting…")
        await expect(agent_tab.page.locator("#status-text")).to_have_text("Connection lost · reconnecting…")
        await chat.say("Are you still there?")
        pending = visitor.page.locator("#pending .row--user")
        await expect(pending).to_contain_text("Waiting for the connection…")
        await visitor.shot("chat-offline")
        gateway = GatewayProcess(database, [key], port=port).start()
        await expect(chat.status).to_have_text("Online")
        await expect(pending).to_have_count(0)
        await expect(chat.bubbles("user").last).to_have_text("Are you still there?")
        await expect(agent.transcript.locator(".row--user .bubble").last).to_have_text("Are you still there?")
        await agent.reply("Yes, still here.")
        await expect(chat.bubbles("human").last).to_have_text("Yes, still here.")

        # the human ends the live chat: the AI answers again
        await agent_tab.page.get_by_role("button", name="End live chat").click()
        await expect(chat.notes().last).to_have_text("The live chat has ended.")
        await expect(chat.banner).to_be_hidden()
        await chat.say("thanks")
        await expect(chat.bubbles("bot").last).to_have_text("You said: thanks")
        await expect(agent_tab.page.locator("#reply-hint")).to_have_text(
            "The AI agent is answering this conversation."
        )
        await expect(agent.transcript.locator(".row--bot .bubble").last).to_have_text("You said: thanks")

        # what the visitor sees is exactly what the gateway stored: every text message, once, in order
        stored = await stored_texts(gateway.http_url, key, conversation_id)
        shown: list[tuple[str, str]] = []
        for row in await visitor.page.locator("#history .row").all():
            kind = (await row.get_attribute("data-from")) or ""
            text = (await row.inner_text()).strip()
            sender = {"user": "user", "bot": "bot", "human": "human_agent", "system": "system"}.get(kind)
            if sender == "human_agent":
                text = text.removeprefix("Human agent").strip()
            elif sender == "bot":
                text = text.removeprefix("Assistant").strip()
            if sender:
                shown.append((sender, text))
        assert [s for s in stored if s in shown] == stored, "a stored message is missing from the page"
        assert [s for s in shown if s in stored] == stored, "the page shows a message twice or out of order"
        # the transcript the visitor can download is the stored one
        async with visitor.page.expect_download() as download_info:
            await visitor.page.get_by_role("button", name="Download the transcript").click()
        download = await download_info.value
        lines = Path(await download.path()).read_text().splitlines()
        assert [line.split("] ", 1)[1] for line in lines if ": " in line][-1] == "bot: You said: thanks"
        assert len(lines) == len(stored) + 2  # + buttons, table
        assert visitor.errors == [] and agent_tab.errors == []
        await visitor.shot("chat-final")
        await agent_tab.shot("console-final")
    finally:
        gateway.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "gateway-chat-test.log").write_text(before_restart + gateway.logs())
        for name, tab in zip(("chat", "console"), tabs):
            tab.save_console(name)
