"""Agents see a message's files: a ``captivate-ai-api`` agent reads ``get_files()`` and downloads each URL;
the ``openai:`` agent puts each file's text (bounded, with its name) into the model's context."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import samples
from file_agent_app import FileAgent

from captivate_chat_api.protocol import ChatRequest
from captivate_chat_api.server.agents.openai_agent import current_message, files_context
from harness.gateway import GatewayProcess
from harness.tokens import set_agent
from harness.wire import WireClient, tls


@pytest.fixture(scope="module")
def agent() -> Iterator[FileAgent]:
    server = FileAgent().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def setup(gateway: GatewayProcess, tenant_keys: list[str], agent: FileAgent) -> tuple[GatewayProcess, str]:
    """The worker's gateway, this module's own key (channel) answered by the webhook agent."""
    key = tenant_keys[0]
    asyncio.run(set_agent(gateway.database, key, f"webhook:{agent.url}"))
    return gateway, key


async def upload(
    gateway: GatewayProcess, key: str, conversation_id: str, name: str, data: bytes
) -> dict[str, Any]:
    async with httpx.AsyncClient(verify=tls(), base_url=gateway.http_url, timeout=60) as http:
        response = await http.post(
            "/api/file-to-text",
            files={"file": (name, data, "application/octet-stream")},
            data={"includeMetadata": "true", "storage": "true", "path": f"{key}/{conversation_id}"},
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_captivate_ai_api_agent_reads_and_downloads_the_files(
    setup: tuple[GatewayProcess, str], agent: FileAgent
) -> None:
    gateway, key = setup
    pdf = samples.pdf()
    async with WireClient(gateway.http_url, gateway.ws_url, key) as client:
        conversation = await client.start()
        stored = await upload(gateway, key, conversation, "report.pdf", pdf)
        own_url = stored["presignedUrl"]  # a developer's own URL (storage false): here the gateway's link
        files = [
            {
                "filename": "report.pdf",
                "type": "application/pdf",
                "file": {},
                "textContent": {
                    "type": "file_content",
                    "text": stored["text"],
                    "metadata": {"source": "file_attachment"},
                },
                # a stale URL in the message: the agent still gets one that works (re-presigned for the turn)
                "storage": {
                    **{k: stored[k] for k in ("fileKey", "expiresIn", "fileSize", "processingTime")},
                    "presignedUrl": "http://127.0.0.1:9/stale",
                },
            },
            {
                "filename": "scan.png",
                "type": "image/png",
                "url": own_url,
                "textContent": {
                    "type": "file_content",
                    "text": "",
                    "metadata": {"source": "file_attachment"},
                },
            },
        ]
        await client.ok(
            "user_message",
            {
                "conversation_id": conversation,
                "type": "message_create",
                "content": {"type": "files", "files": files},
            },
        )
        deadline = time.monotonic() + 15
        while not agent.seen and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert agent.seen, "the agent was never called"
    report = agent.seen[-1]
    assert report["user_input"] == ""  # a files-only message: no text, never the content's JSON
    assert [f["filename"] for f in report["files"]] == ["report.pdf", "scan.png"]
    first, second = report["files"]
    assert first.get("bytes") == len(pdf) and first["sha256"] == hashlib.sha256(pdf).hexdigest(), first
    assert samples.WORD in first["text"]
    assert second.get("bytes") == len(pdf), second  # the top-level url it was given


def test_files_context_is_bounded_and_named() -> None:
    big = {"filename": "big.txt", "type": "text/plain", "textContent": {"text": "y" * 500}}
    small = {"filename": "small.csv", "type": "text/csv", "textContent": {"text": "a,b"}}
    text = files_context([big, small, big, big], per_file=100)
    assert "[attached file: big.txt (text/plain)]" in text and "[attached file: small.csv (text/csv)]" in text
    assert (
        text.count("y") == 297
    )  # 100 + 100 + 97: the turn holds three times the per-file bound (3 went to a,b)
    assert "400 more characters of this file left out" in text and "403 more characters" in text
    request = ChatRequest(session_id="s", user_input="summarise", files=[small])
    message = current_message(request, 100)
    assert (
        message["content"].startswith("summarise\n\n[attached file: small.csv")
        and "a,b" in message["content"]
    )
    files_only = current_message(ChatRequest(session_id="s", user_input="", files=[small]), 100)
    assert files_only["content"].startswith("[attached file: small.csv")
