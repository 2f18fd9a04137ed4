"""Files in the web chat and the agent console, in real Chromium against a real gateway: attach with the
button and by drag-and-drop, upload progress, a refused file, the files sent with a message and shown in the
thread with working download links, and the console's list of a conversation's files."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from browser_kit import open_tab
from playwright.async_api import Browser, Route, expect

from harness.gateway import GatewayProcess
from harness.tokens import add_token
from harness.wire import MESSAGE_PATH, envelope, tls

# one Chromium per test process (tests/web/conftest.py), so the web tests share the session's event loop
pytestmark = pytest.mark.asyncio(loop_scope="session")

NOTES = b"plain text with Zanzibarite inside\n"
CSV = b"name,value\nZanzibarite,1\n"
DROP_CSV = """() => {
  const data = new DataTransfer();
  data.items.add(new File(["name,value\\nZanzibarite,1\\n"], "dropped.csv", { type: "text/csv" }));
  return data;
}"""


async def test_attach_drop_progress_send_download_and_the_console(
    browser: Browser, gateway: GatewayProcess, api_key: str
) -> None:
    database = gateway.database
    token = await add_token(database, api_key, "human", "Alice")
    tab = await open_tab(browser, gateway.http_url)
    page = tab.page
    await page.goto(f"{gateway.http_url}/?key={api_key}&user=web-files")
    await expect(page.locator("#history .row--bot .bubble").first).to_contain_text("Hello!")
    await expect(page.locator("#status-text")).to_have_text("Online")

    # the button: an upload held at the gateway's door shows its progress bar and blocks sending
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await page.route("**/api/file-to-text", hold)
    await page.set_input_files(
        "#file-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": NOTES}]
    )
    chip = page.locator(".chip-file", has_text="notes.txt")
    await expect(chip).to_have_attribute("data-state", "uploading")
    await expect(chip.locator("progress")).to_be_visible()
    await expect(page.locator("#send")).to_be_disabled()
    await tab.shot("files-uploading")
    release.set()
    await expect(chip).to_have_attribute("data-state", "ready")
    await expect(chip).to_contain_text("35 B")
    await expect(page.locator("#send")).to_be_enabled()
    await page.unroute("**/api/file-to-text")

    # drag-and-drop, and a file the gateway refuses (an empty one): its chip says why
    transfer = await page.evaluate_handle(DROP_CSV)
    await page.dispatch_event("#chat", "dragenter", {"dataTransfer": transfer})
    await expect(page.locator("#drop")).to_be_visible()
    await page.dispatch_event("#chat", "drop", {"dataTransfer": transfer})
    await expect(page.locator("#drop")).to_be_hidden()
    await expect(page.locator(".chip-file", has_text="dropped.csv")).to_have_attribute("data-state", "ready")
    await page.set_input_files(
        "#file-input", files=[{"name": "empty.txt", "mimeType": "text/plain", "buffer": b""}]
    )
    refused = page.locator(".chip-file", has_text="empty.txt")
    await expect(refused).to_have_attribute("data-state", "failed")
    await expect(refused).to_contain_text("Not uploaded:")
    await refused.get_by_role("button", name="Remove empty.txt").click()
    await expect(refused).to_have_count(0)
    await tab.shot("files-ready")

    await page.fill("#input", "here you go")
    await page.press("#input", "Enter")
    await expect(page.locator("#tray")).to_be_hidden()
    sent = page.locator("#history .row--user").last
    await expect(sent.locator(".m-file")).to_have_count(2)
    await expect(page.locator("#history .row--bot .bubble", has_text="You said: here you go")).to_have_count(
        1
    )
    await expect(
        page.locator("#history .row--bot .bubble", has_text="Files received: notes.txt")
    ).to_have_count(1)
    link = sent.locator(".m-file a", has_text="notes.txt")
    href = await link.get_attribute("href")
    assert href and href.startswith(f"{gateway.http_url}/files/")
    async with httpx.AsyncClient(verify=tls(), timeout=10) as http:
        assert (await http.get(href)).content == NOTES  # the link alone downloads it
    async with page.expect_download() as download:
        await link.click()
    assert (await download.value).suggested_filename == "notes.txt"
    await tab.shot("files-sent")

    conversation_id = await page.evaluate(
        "JSON.parse(localStorage.getItem('captivate.chat.conversation')).conversation_id"
    )
    async with httpx.AsyncClient(verify=tls(), timeout=10) as http:
        stored = (
            await http.get(
                f"{gateway.http_url}/api/transcript",
                params={"conversation_id": conversation_id},
                headers={"x-api-key": api_key},
            )
        ).json()["transcript"]
    (entry,) = [e for e in stored if e["from"] == "user" and e.get("files")]
    assert entry["content"]["text"] == "here you go"
    assert [f["filename"] for f in entry["files"]] == ["notes.txt", "dropped.csv"]
    assert "Zanzibarite" in entry["files"][1]["textContent"]["text"]

    # the console lists the conversation's files, each a download link
    agent = await open_tab(browser, gateway.http_url, width=1280, height=800)
    await agent.page.goto(f"{gateway.http_url}/console#{conversation_id}")
    await agent.page.fill("#token", token)
    await agent.page.fill("#agent-name", "Alice")
    await agent.page.get_by_role("button", name="Sign in").click()
    files = agent.page.locator("#info .info__files")
    await expect(files.locator("h3")).to_have_text("Files (2)")
    await expect(files.locator(".m-file a")).to_have_count(2)
    await expect(agent.page.locator("#transcript .m-file", has_text="dropped.csv")).to_be_visible()
    await agent.shot("console-files")
    assert tab.errors == [] and agent.errors == []


DROP_TWO = """() => {
  const data = new DataTransfer();
  data.items.add(new File(["first Zanzibarite\\n"], "one.txt", { type: "text/plain" }));
  data.items.add(new File(["second Zanzibarite\\n"], "two.txt", { type: "text/plain" }));
  return data;
}"""


async def test_in_the_widget_a_user_first_files_only_message_starts_one_conversation(
    browser: Browser, gateway: GatewayProcess, api_key: str
) -> None:
    user = "web-files-user-first"
    tab = await open_tab(browser, gateway.http_url)
    page = tab.page
    await page.goto(f"{gateway.http_url}/?key={api_key}&start=user&user={user}&embed=1")  # the widget's frame
    await expect(page.locator("#status-text")).to_have_text("Online")
    assert await page.evaluate("localStorage.getItem('captivate.chat.conversation')") in (
        None,
        "null",
    ) or not await page.evaluate(
        "JSON.parse(localStorage.getItem('captivate.chat.conversation')).conversation_id"
    )
    transfer = await page.evaluate_handle(DROP_TWO)
    await page.dispatch_event("#chat", "drop", {"dataTransfer": transfer})  # two uploads, no conversation yet
    await expect(page.locator(".chip-file[data-state=ready]")).to_have_count(2)
    await page.press("#input", "Enter")  # no text: a files-only message
    sent = page.locator("#history .row--user").last
    await expect(sent.locator(".m-file")).to_have_count(2)
    assert await sent.locator(".m-text").count() == 0  # no empty text line above the files
    async with httpx.AsyncClient(
        verify=tls(), base_url=gateway.http_url, headers={"x-api-key": api_key}, timeout=10
    ) as http:
        listed = (
            await http.post(MESSAGE_PATH, json=envelope("get_user_conversations", {"userId": user}))
        ).json()
        (conversation,) = listed["conversations"]  # the two uploads started one conversation, not two
        stored = (
            await http.get("/api/transcript", params={"conversation_id": conversation["conversation_id"]})
        ).json()["transcript"]
    (entry,) = [e for e in stored if e["from"] == "user"]
    assert entry["content"]["text"] == "" and [f["filename"] for f in entry["files"]] == [
        "one.txt",
        "two.txt",
    ]
    assert tab.errors == []


async def test_an_expired_link_in_the_thread_is_signed_again_when_clicked(
    browser: Browser, gateway: GatewayProcess, api_key: str
) -> None:
    from captivate_chat_api import CaptivateChatAPI

    tab = await open_tab(browser, gateway.http_url)
    page = tab.page
    await page.goto(f"{gateway.http_url}/?key={api_key}&user=web-files-expired")
    await expect(page.locator("#status-text")).to_have_text("Online")
    conversation_id = await page.evaluate(
        "JSON.parse(localStorage.getItem('captivate.chat.conversation')).conversation_id"
    )
    async with CaptivateChatAPI(api_key, base_url=gateway.http_url) as api:  # another tab of the same visitor
        conv = await api.get_conversation(conversation_id)
        old = await conv.file_manager.create_file(NOTES, filename="old.txt")
        assert old.storage is not None
        old.storage.presigned_url = await api.get_secure_file_url(old.storage.file_key, 1)
        old.storage.expires_in = 0  # long expired
        async with httpx.AsyncClient(verify=tls(), timeout=10) as http:
            deadline = time.monotonic() + 10
            while (await http.get(old.storage.presigned_url)).status_code != 403:  # expired after 1 s
                assert time.monotonic() < deadline, "a 1 s link still answers after 10 s"
                await asyncio.sleep(0.1)
        await conv.send_message({"type": "text", "text": "an old file", "files": [old]})
    link = page.locator("#history .m-file a", has_text="old.txt")
    await expect(link).to_have_attribute("href", old.storage.presigned_url)
    async with page.expect_download() as download:
        await link.click()  # re-signed through /api/presigned-url first
    saved = await (await download.value).path()
    assert saved.read_bytes() == NOTES
    assert await link.get_attribute("href") != old.storage.presigned_url
    assert tab.errors == []
