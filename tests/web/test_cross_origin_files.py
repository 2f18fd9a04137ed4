"""A page on a customer's site (another origin: another port) calls the gateway as the npm client's file
manager and conversation do, in real Chromium: a multipart upload, a JSON presign, the event POST and the
transcript with ``x-api-key`` (preflighted). A page on an origin outside ``cors_origins`` gets nothing."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from browser_kit import chromium, open_tab
from playwright.async_api import Route

from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient

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


async def run_calls(gateway: GatewayProcess, key: str, origin: str) -> dict[str, Any]:
    async with WireClient(gateway.http_url, gateway.ws_url, key) as client:
        conversation = await client.start("cross-origin-user")
    async with chromium() as browser:
        tab = await open_tab(browser, "http://127.0.0.1:")  # the gateway and the shop: loopback ports

        async def serve_shop(route: Route) -> None:
            await route.fulfill(status=200, content_type="text/html", body="<!doctype html><h1>Shop</h1>")

        await tab.page.context.route(f"{origin}/shop.html", serve_shop)
        await tab.page.context.grant_permissions(["local-network-access"])
        await tab.page.goto(f"{origin}/shop.html")
        result: dict[str, Any] = await tab.page.evaluate(CALLS, [gateway.http_url, key, conversation])
        result["conversation"] = conversation
        tab.save_console(f"cross-origin-{origin.rsplit(':', 1)[1]}")
        return result


async def test_a_page_on_an_allowed_origin_uploads_presigns_and_chats(
    cors_gateway: GatewayProcess, key: str, shop_origins: tuple[str, str]
) -> None:
    result = await run_calls(cors_gateway, key, shop_origins[0])
    assert "error" not in result, result
    assert result["upload"]["status"] == 200 and "Zanzibarite" in result["upload"]["body"]["text"]
    assert result["presign"]["status"] == 200 and result["presign"]["body"]["presignedUrl"]
    assert result["event"]["status"] == 200, result["event"]
    assert result["transcript"]["status"] == 200
    entries = result["transcript"]["body"]["transcript"]
    sent = [e for e in entries if e.get("files")]
    assert sent and sent[-1]["files"][0]["filename"] == "notes.txt", json.dumps(entries)[:500]


async def test_a_page_on_another_origin_is_refused_by_the_browser(
    cors_gateway: GatewayProcess, key: str, shop_origins: tuple[str, str]
) -> None:
    result = await run_calls(cors_gateway, key, shop_origins[1])
    assert "upload" not in result and "Failed to fetch" in result["error"], result
