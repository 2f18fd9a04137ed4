"""Defects found when porting JS code to the SDK, each against a real gateway (every test here failed on the
code before the fix): a transcript with ``storage.expiresIn: null``, conversations listed across keys, and
the 413 ``message_link`` fallback's ``on_error``."""

from __future__ import annotations

import asyncio
from typing import Any

from captivate_chat_api import CaptivateChatAPI, CaptivateChatManager, ErrorInfo
from harness.gateway import GatewayProcess


async def until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


UNKNOWN_FILE = {
    "filename": "old.pdf",
    "type": "application/pdf",
    "textContent": {"type": "file_content", "text": "old", "metadata": {"source": "file_attachment"}},
    "storage": {"fileKey": "no-such-key-anywhere", "presignedUrl": "http://127.0.0.1:9/x", "expiresIn": None},
}


async def test_a_null_expiry_does_not_make_the_transcript_unreadable(
    api: CaptivateChatAPI, user_id: str
) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    await conv.send_message({"type": "text", "text": "an old upload", "files": [UNKNOWN_FILE]})
    transcript = await conv.get_transcript()  # was: TypeError (int(None)) in the refresh check
    (entry,) = [e for e in transcript if e.sender == "user"]
    # the refresh was tried (an unknown expiry is not trusted) and failed: the file is kept as it was
    assert entry.files == [UNKNOWN_FILE]
    (attachment,) = entry.attachments
    assert attachment.storage is not None and attachment.storage.expires_in is None


async def test_a_listing_across_keys_routes_each_conversation_through_its_own_key(
    gateway: GatewayProcess, tenant_keys: list[str], user_id: str
) -> None:
    key_a, key_b = tenant_keys
    async with CaptivateChatAPI(key_b, base_url=gateway.http_url) as owner_b:
        made_b = await owner_b.create_conversation(user_id, metadata={"k": "b"}, mode="user-first")
    async with CaptivateChatAPI(key_a, base_url=gateway.http_url) as api_a:
        made_a = await api_a.create_conversation(user_id, metadata={"k": "a"}, mode="user-first")
        listing = await api_a.get_user_conversations(user_id, api_keys=[key_a, key_b])
        by_id = {c.conversation_id: c for c in listing.conversations}
        assert set(by_id) == {made_a.conversation_id, made_b.conversation_id}
        conv_b = by_id[made_b.conversation_id]
        assert (await conv_b.get_metadata())["k"] == "b"  # was: 404, sent with key A
        replies: list[Any] = []
        conv_b.on_message(lambda m, k: replies.append(m))
        await conv_b.send_message("hello from the listing")
        await until(lambda: replies)  # its events reach it too (on key B's own socket)
        assert by_id[made_a.conversation_id] is made_a

    async with CaptivateChatManager([key_a, key_b], base_url=gateway.http_url) as manager:
        listing = await manager.get_user_conversations(user_id)
        conv_b = next(c for c in listing.conversations if c.conversation_id == made_b.conversation_id)
        assert conv_b in manager.get_api(key_b)._link.conversations.values()
        assert len(await conv_b.get_transcript()) >= 1  # was: 404 through key A's client


async def test_the_413_fallback_also_calls_on_error(api: CaptivateChatAPI, user_id: str) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    texts: list[str] = []
    errors: list[ErrorInfo] = []
    conv.on_message(lambda m, k: texts.append(m["text"]) if k == "ai_agent" else None)
    conv.on_error(errors.append)
    await conv.send_message("big")
    await until(lambda: len(texts) == 2 and errors)
    assert len(texts[1]) == 300 * 1024  # on_message: the fetched message, as npm
    assert [e.error_code for e in errors] == [413]  # on_error: the 413 itself, as npm's onError listener
    assert errors[0].conversation_id == conv.conversation_id
