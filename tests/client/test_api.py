"""The async SDK against a real gateway: every call, on both transports."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from captivate_chat_api import (
    AuthenticationError,
    BotMessage,
    CaptivateChatAPI,
    CaptivateChatManager,
    ChatConnectionError,
    ClientClosedError,
    ConnectionState,
    ConversationUpdate,
    NotFoundError,
    PageInfo,
    UserMessageEcho,
)
from harness.gateway import GatewayProcess


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_user_first_conversation_message_and_reply(api: CaptivateChatAPI, user_id: str) -> None:
    conv = await api.create_conversation(user_id, {"name": "Ada"}, {"plan": "pro"}, mode="user-first")
    received: list[tuple[Any, str]] = []

    @conv.on_message
    def show(message: Any, kind: str) -> None:
        received.append((message, kind))

    sent = await conv.send_message("Hello!")
    assert sent.conversation_id == conv.conversation_id and sent.message_id and sent.seq == 1
    assert len(sent.client_msg_id) == 36  # a UUID
    await until(lambda: received)
    assert received == [({"type": "text", "text": "You said: Hello!"}, "ai_agent")]


async def test_bot_first_greeting_is_kept_until_someone_listens(api: CaptivateChatAPI, user_id: str) -> None:
    conv = await api.create_conversation(user_id, mode="bot-first")
    await asyncio.sleep(0.3)  # the greeting arrives before anyone listens
    stream = conv.events()
    first = await stream.next(timeout=5)
    assert isinstance(first, (BotMessage, UserMessageEcho))
    while not isinstance(first, BotMessage):
        first = await stream.next(timeout=5)
    assert "demo agent" in first.content["text"]


async def test_async_callbacks_and_dict_messages(api: CaptivateChatAPI, user_id: str) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    kinds: list[str] = []
    contents: list[Any] = []

    async def on_message(message: Any, kind: str) -> None:
        await asyncio.sleep(0)
        kinds.append(kind)
        contents.append(message)

    conv.on_message(on_message)
    await conv.send_message({"type": "text", "text": "buttons"})
    await until(lambda: len(contents) == 2)
    assert kinds == ["ai_agent", "ai_agent"]
    assert contents[1]["type"] == "button"


async def test_events_iterator_yields_typed_events_in_seq_order(api: CaptivateChatAPI, user_id: str) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    stream = conv.events()
    await conv.send_message("title Refund")
    seen = []
    while not any(isinstance(e, ConversationUpdate) for e in seen):
        seen.append(await stream.next(timeout=5))
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)
    assert isinstance(seen[0], UserMessageEcho) and seen[0].content == {
        "type": "text",
        "text": "title Refund",
    }
    update = seen[-1]
    assert (
        isinstance(update, ConversationUpdate)
        and update.type == "title_changed"
        and update.data == {"title": "Refund"}
    )
    assert conv.last_seq == seen[-1].seq


async def test_update_and_action_callbacks(api: CaptivateChatAPI, user_id: str) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    updates: list[Any] = []
    actions: list[Any] = []
    conv.on_conversation_update(updates.append)
    conv.on_action_received(actions.append)
    await conv.send_message("action")
    await conv.send_message("title New title")
    await until(lambda: actions and updates)
    assert actions[0][0]["id"] == "demo_action"
    assert updates[0].type == "title_changed" and updates[0].conversation_id == conv.conversation_id


async def test_conversations_on_one_client_get_only_their_own_events(
    api: CaptivateChatAPI, user_id: str
) -> None:
    first = await api.create_conversation(user_id, mode="user-first")
    second = await api.create_conversation(user_id, mode="user-first")
    got: dict[str, list[str]] = {first.conversation_id: [], second.conversation_id: []}
    first.on_message(lambda m, k: got[first.conversation_id].append(m["text"]))
    second.on_message(lambda m, k: got[second.conversation_id].append(m["text"]))
    await asyncio.gather(first.send_message("one"), second.send_message("two"))
    await until(lambda: all(got.values()))
    await asyncio.sleep(0.2)
    assert got == {first.conversation_id: ["You said: one"], second.conversation_id: ["You said: two"]}


async def test_metadata_private_metadata_and_ttl(api: CaptivateChatAPI, user_id: str) -> None:
    conv = await api.create_conversation(
        user_id, metadata={"plan": "free"}, mode="user-first", private_metadata={"crm_id": 7}
    )
    await conv.set_metadata({"plan": "pro"})
    await conv.set_private_metadata({"token": "hidden"})
    await conv.set_time_to_live(30)
    metadata = await conv.get_metadata()
    assert metadata == {"plan": "pro", "timeToLive": 30}
    with pytest.raises(ValueError):
        await conv.set_time_to_live(5)


async def test_action_edit_and_transcript(api: CaptivateChatAPI, user_id: str) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    replies: list[str] = []
    conv.on_message(lambda m, k: replies.append(m["text"]))
    sent = await conv.send_message("typo")
    await conv.send_action("buy", {"sku": 1})
    await until(lambda: len(replies) == 2)
    assert "Action received: buy" in replies
    await conv.edit_message(str(sent.message_id), "fixed")
    transcript = await conv.get_transcript()
    assert [e.sender for e in transcript] == ["user", "bot", "bot"]
    assert transcript[0].content == {"type": "text", "text": "fixed"} and transcript[0].edited_at
    assert [e.seq for e in transcript] == sorted(e.seq for e in transcript)


async def test_large_message_arrives_through_the_413_fallback(api: CaptivateChatAPI, user_id: str) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    texts: list[str] = []
    conv.on_message(lambda m, k: texts.append(m["text"]) if k == "ai_agent" else None)
    await conv.send_message("big")
    await until(lambda: len(texts) == 2)
    assert len(texts[1]) == 300 * 1024


async def test_listing_v1_v2_and_deletes(api: CaptivateChatAPI, user_id: str) -> None:
    convs = [
        await api.create_conversation(user_id, metadata={"plan": "pro" if i else "free"}, mode="user-first")
        for i in range(3)
    ]
    v1 = await api.get_user_conversations(user_id)
    assert sorted(c.conversation_id for c in v1.conversations) == sorted(c.conversation_id for c in convs)
    assert v1.pagination is None
    v2 = await api.get_user_conversations(user_id, filter={"plan": "pro"}, pagination={"page": 1, "limit": 1})
    assert v2.pagination == PageInfo(True, False, 1, 1, 2, 2)
    assert v2.conversations[0].metadata == {"plan": "pro"}
    await convs[0].delete(soft_delete=True)
    assert len((await api.get_user_conversations(user_id)).conversations) == 2
    with pytest.raises(NotFoundError):
        await convs[0].get_transcript()
    assert await api.delete_user_conversations(user_id) == 2
    assert (await api.get_user_conversations(user_id)).conversations == []


async def test_get_conversation_resumes_after_a_stored_seq(
    gateway: GatewayProcess, api_key: str, transport: str, user_id: str
) -> None:
    async with CaptivateChatAPI(api_key, base_url=gateway.http_url, transport=transport) as first:  # type: ignore[arg-type]
        conv = await first.create_conversation(user_id, mode="user-first")
        replies: list[Any] = []
        conv.on_message(lambda m, k: replies.append(m))
        await conv.send_message("one")
        await until(lambda: replies)
        stored_seq = conv.last_seq
        await conv.send_message("two")  # sent, then the app goes away before reading the reply
        conversation_id = conv.conversation_id
    async with CaptivateChatAPI(api_key, base_url=gateway.http_url, transport=transport) as later:  # type: ignore[arg-type]
        resumed = await later.get_conversation(conversation_id, after_seq=stored_seq)
        stream = resumed.events()
        replayed = [await stream.next(timeout=5), await stream.next(timeout=5)]
        assert [e.seq for e in replayed] == [stored_seq + 1, stored_seq + 2]
        assert isinstance(replayed[1], BotMessage) and replayed[1].content["text"] == "You said: two"


async def test_multi_key_listing_and_manager(
    gateway: GatewayProcess, tenant_keys: list[str], user_id: str
) -> None:
    async with CaptivateChatManager(tenant_keys, base_url=gateway.http_url) as manager:
        a = await manager.get_api(tenant_keys[0]).create_conversation(user_id, mode="user-first")
        b = await manager.get_api(tenant_keys[1]).create_conversation(user_id, mode="user-first")
        listed = await manager.get_user_conversations(user_id)
        assert {c.conversation_id for c in listed.conversations} == {a.conversation_id, b.conversation_id}
        assert listed.pagination is not None and listed.pagination.total == 2


async def test_errors(gateway: GatewayProcess, api_key: str) -> None:
    with pytest.raises(AuthenticationError) as refused:
        await CaptivateChatAPI("cck_wrong", base_url=gateway.http_url).connect()
    assert refused.value.error_code == 401
    with pytest.raises(ChatConnectionError):
        await CaptivateChatAPI(api_key, base_url="http://127.0.0.1:1", connect_timeout=2).connect()
    api = CaptivateChatAPI(api_key, base_url=gateway.http_url)
    await api.connect()
    with pytest.raises(NotFoundError) as missing:
        await (await api.get_conversation("no-such-conversation")).send_message("x")
    assert missing.value.error_code == 404 and missing.value.error_desc == "conversation not found"
    await api.close()
    with pytest.raises(ClientClosedError):
        await api.create_conversation("u")


async def test_state_changes_are_observable(gateway: GatewayProcess, api_key: str) -> None:
    api = CaptivateChatAPI(api_key, base_url=gateway.http_url)
    states: list[ConnectionState] = []
    api.on_state_change(states.append)
    await api.connect()
    await api.close()
    assert states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.CLOSED]


async def test_debug_logs_never_show_the_key(
    gateway: GatewayProcess, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    async with CaptivateChatAPI(api_key, base_url=gateway.http_url) as api:
        conv = await api.create_conversation("logged", mode="user-first")
        await conv.send_message("hi")
    assert "GET /dev?" in caplog.text  # the request line was logged...
    assert api_key not in caplog.text and api_key[4:16] not in caplog.text  # ...without the key
