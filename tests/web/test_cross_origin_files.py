"""A page on a customer's site (another origin: another port) calls the gateway as the npm client's file
manager and conversation do, in real Chromium: a multipart upload, a JSON presign, the event POST and the
transcript with ``x-api-key`` (preflighted). A page on an origin outside ``cors_origins`` gets nothing."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_kit import open_tab
from playwright.async_api import Browser, Route

from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from npm_runner import PREFIX, ensure_client  # the published npm client, installed once for the tests

# one Chromium per test process (tests/web/conftest.py), so the web tests share the session's event loop
pytestmark = pytest.mark.asyncio(loop_scope="session")

CALLS = """async ([gateway, key, conversation]) => {
  const out = {};
  const form = new FormData();
  form.append("file", new Blob(["cross origin Zanzibarite\\n"], { type: "application/octet-stream" }), "notes.txt");
  form.append("includeMetadata", "true");
  form.append("storage", "true");
  form.append("path", `${key}/${conversation}`);
  try {
    const uploaded = await fetch(`${gateway}/api/file-to-text`, { method: "POST", body: form });
    out.upload = { status: uploaded.status, body: await uploaded.json() };
    const presigned = await fetch(`${gateway}/api/presigned-url`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ fileKey: out.upload.body.fileKey, expiresIn: 600 }),
    });
    out.presign = { status: presigned.status, body: await presigned.json() };
    const file = { filename: "notes.txt", type: "text/plain", storage: { fileKey: out.upload.body.fileKey } };
    const event = await fetch(`${gateway}/api/custom-channel/sockets/message`, {
      method: "POST",
      headers: { "x-api-key": key, "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({
        action: "sendMessage",
        event: {
          event_type: "user_message",
          event_payload: {
            conversation_id: conversation,
            type: "message_create",
            content: { type: "text", text: "see the file", files: [file] },
          },
        },
      }),
    });
    out.event = { status: event.status, body: await event.json() };
    const transcript = await fetch(
      `${gateway}/api/transcript?conversation_id=${encodeURIComponent(conversation)}`,
      { headers: { "x-api-key": key, Accept: "application/json" } },
    );
    out.transcript = { status: transcript.status, body: await transcript.json() };
  } catch (error) {
    out.error = String(error);
  }
  return out;
}"""


NPM_CALLS = """async ([gateway, key, conversation]) => {
  // the one change to the published bundle, as in tests/interop: its cloud file service is this gateway
  const cloud = "https://file-to-text.prod.captivat.io";
  const realFetch = window.fetch.bind(window);
  window.fetch = (url, init) => realFetch(String(url).startsWith(cloud) ? gateway + String(url).slice(cloud.length) : url, init);
  const { CaptivateChatFileManager } = window;
  try {
    const file = new File(["npm bundle Zanzibarite\\n"], "npm-notes.txt", { type: "text/plain" });
    const manager = await CaptivateChatFileManager.create({ file, apiKey: key, conversationId: conversation });
    const stored = manager.files[0];
    const url = await CaptivateChatFileManager.getSecureFileUrl(stored.storage.fileKey, 600);
    return { stored, url };
  } catch (error) {
    return { error: String(error) };
  }
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def shop_origins() -> tuple[str, str]:
    return f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def key() -> str:
    return new_key()


@pytest.fixture(scope="module")
def cors_gateway(
    tmp_path_factory: pytest.TempPathFactory, key: str, shop_origins: tuple[str, str]
) -> Iterator[GatewayProcess]:
    env = {"CAPTIVATE_CORS_ORIGINS": shop_origins[0], "CAPTIVATE_FILES_EXTRACT_TIMEOUT": "20"}
    process = GatewayProcess(tmp_path_factory.mktemp("cors-web") / "gw.db", [key], env=env).start()
    yield process
    process.stop()


async def run_calls(
    browser: Browser,
    gateway: GatewayProcess,
    key: str,
    origin: str,
    calls: str = CALLS,
    bundle: Path | None = None,
) -> dict[str, Any]:
    async with WireClient(gateway.http_url, gateway.ws_url, key) as client:
        conversation = await client.start("cross-origin-user")
    tab = await open_tab(browser, "http://127.0.0.1:")  # own context; the gateway and the shop: loopback

    script = '<script src="/captivate-chat-api.js"></script>' if bundle else ""

    async def serve_shop(route: Route) -> None:
        await route.fulfill(
            status=200, content_type="text/html", body=f"<!doctype html><h1>Shop</h1>{script}"
        )

    await tab.page.context.route(f"{origin}/shop.html", serve_shop)
    if bundle is not None:

        async def serve_bundle(route: Route) -> None:
            await route.fulfill(status=200, content_type="text/javascript", body=bundle.read_text())

        await tab.page.context.route(f"{origin}/captivate-chat-api.js", serve_bundle)
    await tab.page.context.grant_permissions(["local-network-access"])
    await tab.page.goto(f"{origin}/shop.html")
    result: dict[str, Any] = await tab.page.evaluate(calls, [gateway.http_url, key, conversation])
    result["conversation"] = conversation
    tab.save_console(f"cross-origin-{origin.rsplit(':', 1)[1]}")
    return result


async def test_a_page_on_an_allowed_origin_uploads_presigns_and_chats(
    browser: Browser, cors_gateway: GatewayProcess, key: str, shop_origins: tuple[str, str]
) -> None:
    result = await run_calls(browser, cors_gateway, key, shop_origins[0])
    assert "error" not in result, result
    assert result["upload"]["status"] == 200 and "Zanzibarite" in result["upload"]["body"]["text"]
    assert result["presign"]["status"] == 200 and result["presign"]["body"]["presignedUrl"]
    assert result["event"]["status"] == 200, result["event"]
    assert result["transcript"]["status"] == 200
    entries = result["transcript"]["body"]["transcript"]
    sent = [e for e in entries if e.get("files")]
    assert sent and sent[-1]["files"][0]["filename"] == "notes.txt", json.dumps(entries)[:500]


async def test_a_page_on_another_origin_is_refused_by_the_browser(
    browser: Browser, cors_gateway: GatewayProcess, key: str, shop_origins: tuple[str, str]
) -> None:
    result = await run_calls(browser, cors_gateway, key, shop_origins[1])
    assert "upload" not in result and "Failed to fetch" in result["error"], result


async def test_the_published_npm_bundle_uploads_from_another_origin(
    browser: Browser, cors_gateway: GatewayProcess, key: str, shop_origins: tuple[str, str]
) -> None:
    """captivate-chat-api 7.0.0's browser bundle (dist/captivate-chat-api.js, loaded by the shop's page):
    CaptivateChatFileManager.create and getSecureFileUrl, cross-origin."""
    ensure_client()
    bundle = PREFIX / "node_modules" / "captivate-chat-api" / "dist" / "captivate-chat-api.js"
    result = await run_calls(browser, cors_gateway, key, shop_origins[0], NPM_CALLS, bundle)
    assert "error" not in result, result
    assert "Zanzibarite" in json.dumps(result["stored"])
    assert result["stored"]["storage"]["fileKey"] and result["url"].startswith(
        cors_gateway.http_url + "/files/"
    )
