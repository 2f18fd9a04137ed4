"""The blocking facade (``captivate_chat_api.sync``) against a real gateway process, from a plain
script and from test code."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from captivate_chat_api import (
    AuthenticationError,
    BotMessage,
    ClientClosedError,
    ConnectionState,
    ConversationUpdate,
    ConversationUpdateInfo,
    UserMessageEcho,
)
from captivate_chat_api.sync import CaptivateChatAPI, CaptivateChatManager, Conversation, EventIterator
from harness.gateway import GatewayProcess

WAIT = 10.0


def user() -> str:
    return f"sync-{uuid.uuid4().hex[:8]}"


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "captivate-chat-loop"]


def bot_reply(events: EventIterator, text: str) -> BotMessage:
    """The first bot message whose text is ``text`` (earlier events, e.g. the greeting, are skipped)."""
    for event in events:
        if (
            isinstance(event, BotMessage)
            and isinstance(event.content, dict)
            and event.content.get("text") == text
        ):
            return event
    raise AssertionError(f"the stream ended before the bot said {text!r}")


@pytest.fixture
def sync_api(gateway: GatewayProcess, api_key: str, transport: str) -> Iterator[CaptivateChatAPI]:
    """A connected blocking client, on each transport (``transport`` comes from tests/client/conftest.py)."""
    with CaptivateChatAPI(api_key, base_url=gateway.http_url, transport=transport, timeout=30) as client:
        yield client


SCRIPT = """
import os
from captivate_chat_api import BotMessage
from captivate_chat_api.sync import CaptivateChatAPI

with CaptivateChatAPI(os.environ["CAPTIVATE_KEY"], base_url=os.environ["CAPTIVATE_URL"]) as api:
    conversation = api.create_conversation("script-user", metadata={"source": "script"})
    events = conversation.events(timeout=10)
    conversation.send_message("hello from a script")
    for event in events:
        if isinstance(event, BotMessage) and event.content["text"].startswith("You said"):
            print("reply:", event.content["text"])
            break
    for entry in conversation.get_transcript():
        print("transcript:", entry.sender, entry.content["text"])
    print("metadata:", conversation.get_metadata())
print("done")
"""


def test_a_plain_script_chats_and_exits(gateway: GatewayProcess, api_key: str, tmp_path: Path) -> None:
    script = tmp_path / "chat.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "CAPTIVATE_KEY": api_key, "CAPTIVATE_URL": gateway.http_url}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "reply: You said: hello from a script" in lines
    transcript = [line for line in lines if line.startswith("transcript:")]
    # (the bot-first greeting may be stored before or after the user's message)
    asked = transcript.index("transcript: user hello from a script")
    assert transcript.index("transcript: bot You said: hello from a script") > asked
    assert "metadata: {'source': 'script'}" in lines
    assert lines[-1] == "done"
    assert result.stderr == ""  # no warning, no traceback from a thread left behind
    assert time.monotonic() - started < 30


def test_events_iterator_receives_the_greeting_and_the_reply(sync_api: CaptivateChatAPI) -> None:
    conversation = sync_api.create_conversation(user())
    events = conversation.events(timeout=WAIT)
    greeting = next(e for e in events if isinstance(e, BotMessage))
    assert "demo agent" in greeting.content["text"]
    sent = conversation.send_message("hi")
    reply = bot_reply(events, "You said: hi")
    assert sent.seq is not None and reply.seq == sent.seq + 1
    assert conversation.last_seq == reply.seq


def test_callbacks_run_on_the_loop_thread(sync_api: CaptivateChatAPI) -> None:
    conversation = sync_api.create_conversation(user(), mode="user-first")
    replies: list[tuple[object, str, str]] = []
    done = threading.Event()

    @conversation.on_message
    def on_message(message: object, kind: str) -> None:
        replies.append((message, kind, threading.current_thread().name))
        done.set()

    conversation.send_message("callback")
    assert done.wait(WAIT)
    assert replies == [({"type": "text", "text": "You said: callback"}, "ai_agent", "captivate-chat-loop")]


def test_a_blocking_call_from_a_callback_is_refused_not_deadlocked(sync_api: CaptivateChatAPI) -> None:
    conversation = sync_api.create_conversation(user(), mode="user-first")
    raised: list[BaseException] = []
    done = threading.Event()

    def on_message(message: object, kind: str) -> None:
        try:
            conversation.get_metadata()
        except RuntimeError as exc:
            raised.append(exc)
        done.set()

    conversation.on_message(on_message)
    conversation.send_message("x")
    assert done.wait(WAIT)
    assert len(raised) == 1 and "callback" in str(raised[0])
    assert conversation.get_metadata() == {}  # and the facade still works from this thread


def test_actions_and_updates_reach_their_callbacks(sync_api: CaptivateChatAPI) -> None:
    conversation = sync_api.create_conversation(user(), mode="user-first")
    actions: list[list[dict[str, object]]] = []
    updates: list[ConversationUpdateInfo] = []
    got_action, got_update = threading.Event(), threading.Event()
    conversation.on_action_received(lambda a: (actions.append(a), got_action.set()))
    conversation.on_conversation_update(lambda u: (updates.append(u), got_update.set()))
    conversation.send_message("action")
    conversation.send_message("title Sync works")
    assert got_action.wait(WAIT) and got_update.wait(WAIT)
    assert actions[0][0]["id"] == "demo_action"
    assert updates[0].type == "title_changed" and updates[0].data == {"title": "Sync works"}


def test_events_time_out_per_item(sync_api: CaptivateChatAPI) -> None:
    conversation = sync_api.create_conversation(user(), mode="user-first")
    events = conversation.events(timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        next(events)
    assert time.monotonic() - started < 5
    conversation.send_message("still alive")  # the stream goes on after a timed-out wait, losing nothing
    echo = events.next(WAIT)
    assert isinstance(echo, UserMessageEcho) and echo.seq == 1
    assert bot_reply(events, "You said: still alive").seq == 2


def test_metadata_transcript_edit_and_actions(sync_api: CaptivateChatAPI) -> None:
    conversation = sync_api.create_conversation(user(), mode="user-first", metadata={"plan": "free"})
    conversation.set_metadata({"plan": "pro"})
    conversation.set_private_metadata({"crm_id": "c-1"})
    conversation.set_time_to_live(7)
    metadata = conversation.get_metadata()
    assert metadata["plan"] == "pro" and metadata["timeToLive"] == 7
    assert "crm_id" not in str(metadata)
    assert conversation.metadata == metadata and conversation.time_to_live == 7

    events = conversation.events(timeout=WAIT)
    sent = conversation.send_message("first")
    bot_reply(events, "You said: first")
    conversation.send_action("open_cart", {"sku": 1})
    bot_reply(events, "Action received: open_cart")
    assert sent.message_id is not None
    conversation.edit_message(sent.message_id, "first, edited")
    transcript = conversation.get_transcript()
    assert [(e.sender, e.content["text"]) for e in transcript][:2] == [
        ("user", "first, edited"),
        ("bot", "You said: first"),
    ]


def test_listing_resuming_and_deleting(
    gateway: GatewayProcess, sync_api: CaptivateChatAPI, api_key: str
) -> None:
    who = user()
    first = sync_api.create_conversation(who, mode="user-first")
    second = sync_api.create_conversation(who, mode="user-first")
    listing = sync_api.get_user_conversations(who)
    assert {c.conversation_id for c in listing.conversations} == {
        first.conversation_id,
        second.conversation_id,
    }
    assert all(isinstance(c, Conversation) for c in listing.conversations)
    assert first in listing.conversations  # views of one conversation are equal
    page = sync_api.get_user_conversations(who, pagination={"page": 1, "limit": 1})
    assert page.pagination is not None and page.pagination.total == 2 and len(page.conversations) == 1

    first.send_message("before")
    bot_reply(first.events(timeout=WAIT), "You said: before")
    with CaptivateChatAPI(api_key, base_url=gateway.http_url) as other:
        resumed = other.get_conversation(first.conversation_id, after_seq=0)
        replayed = bot_reply(resumed.events(timeout=WAIT), "You said: before")
        assert replayed.seq == 2

    events = first.events(timeout=WAIT)
    first.delete()
    rest = list(events)  # the stream ends, at most with the deletion itself
    assert all(isinstance(e, ConversationUpdate) and e.type == "deleted" for e in rest), rest
    assert first.closed
    assert [c.conversation_id for c in sync_api.get_user_conversations(who).conversations] == [
        second.conversation_id
    ]
    assert sync_api.delete_user_conversations(who) == 1
    assert sync_api.get_user_conversations(who).conversations == []


def test_the_manager_lists_across_keys(gateway: GatewayProcess, tenant_keys: list[str]) -> None:
    who, before = user(), len(loop_threads())
    with CaptivateChatManager.create(tenant_keys, base_url=gateway.http_url) as manager:
        assert set(manager.apis) == set(tenant_keys)
        ids = {
            manager.get_api(key).create_conversation(who, mode="user-first").conversation_id
            for key in tenant_keys
        }
        listing = manager.get_user_conversations(who)
        assert {c.conversation_id for c in listing.conversations} == ids
        assert all(api.is_connected for api in manager.apis.values())
        assert len(loop_threads()) == before + 1  # one loop thread for the whole manager
    assert len(loop_threads()) == before
    assert all(api.state is ConnectionState.CLOSED for api in manager.apis.values())


def test_closing_stops_the_loop_thread(gateway: GatewayProcess, api_key: str) -> None:
    before = len(loop_threads())
    states: list[ConnectionState] = []
    api = CaptivateChatAPI(api_key, base_url=gateway.http_url)
    api.on_state_change(states.append)
    api.connect()
    conversation = api.create_conversation(user(), mode="user-first")
    assert len(loop_threads()) == before + 1
    api.close()
    api.close()  # idempotent
    assert len(loop_threads()) == before
    assert states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.CLOSED]
    with pytest.raises(ClientClosedError):
        conversation.send_message("too late")
    with pytest.raises(ClientClosedError):
        api.connect()


def test_errors_keep_their_types_and_leave_no_thread(gateway: GatewayProcess) -> None:
    before = len(loop_threads())
    wrong_key = "cck_not_a_key_" + uuid.uuid4().hex
    with pytest.raises(AuthenticationError), CaptivateChatAPI(wrong_key, base_url=gateway.http_url):
        pass
    with pytest.raises(ValueError, match="api_key"):
        CaptivateChatAPI("", base_url=gateway.http_url)
    assert len(loop_threads()) == before
