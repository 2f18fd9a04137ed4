"""``captivate-chat chat``: the real command in a pseudo-terminal (pexpect) against a real gateway, the same
command with piped stdin, and the rendering of each kind of message content."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from captivate_chat_api import CaptivateChatAPI
from captivate_chat_api.cli import app
from captivate_chat_api.protocol import (
    Action,
    BotMessage,
    ConversationUpdate,
    GeneralError,
    LivechatMessage,
    UserMessageEcho,
)
from captivate_chat_api.terminal.blocks import Block, describe
from captivate_chat_api.terminal.render import html_lines, render_content
from harness.forkserver import run_cli
from harness.gateway import GatewayProcess, new_key
from harness.terminal import ANSI, Terminal, cli_environment

# Python 3.12+ warns about forkpty() in a process with threads (the gateway's log pumps); the child execs at once.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")

PROMPT = "you> "
CONVERSATION = re.compile(r"conversation ([0-9a-f-]{36})")


class Chat(Terminal):
    """``captivate-chat chat`` running in a pseudo-terminal."""

    def __init__(self, url: str, *args: str, key: str | None) -> None:
        super().__init__(["chat", "--url", url, *args], cli_environment("CAPTIVATE_API_KEY", key))

    def say(self, line: str) -> None:
        self.expect(PROMPT)
        self.child.sendline(line)


@pytest.fixture
def chats() -> Iterator[list[Chat]]:
    """Chats started by a test; any still running at its end is killed."""
    started: list[Chat] = []
    yield started
    for chat in started:
        chat.close()


def start(chats: list[Chat], url: str, *args: str, key: str | None) -> Chat:
    chat = Chat(url, *args, key=key)
    chats.append(chat)
    return chat


def test_chat_in_a_terminal(gateway: GatewayProcess, api_key: str, chats: list[Chat]) -> None:
    chat = start(chats, gateway.http_url, "--user", "terminal-test", key=api_key)
    chat.expect(r"conversation [0-9a-f-]{36} \(user terminal-test\)")

    chat.say("hello")
    chat.expect("bot> " + ANSI + "You said: hello")

    chat.say("buttons")
    chat.expect("Pick one")
    for number, option in enumerate(["Yes", "No", "Maybe"], 1):
        chat.expect(rf"{number}\. {option}\r")

    chat.say("/transcript")
    chat.expect("--- transcript: 5 messages ---")
    chat.expect(r"user: hello\r")
    chat.expect(r"bot: You said: hello\r")
    chat.expect(r"user: buttons\r")
    chat.expect("--- end of transcript ---")

    chat.say("title Foo")
    chat.expect(r'\[title_changed \{"title": "Foo"\}\]')
    chat.say("/metadata")
    chat.expect(r'"conversation_title": "Foo"')
    chat.expect("--- end of metadata ---")

    chat.say("action")
    chat.expect(r'\[action demo_action \{"source": "demo", "text": "action"\}\]')

    chat.say("/quit")
    assert chat.exit_status() == 0
    assert api_key not in chat.screen.getvalue()
    assert "Traceback" not in chat.screen.getvalue()


def test_bot_first_shows_the_greeting_then_resume_keeps_the_history(
    gateway: GatewayProcess, api_key: str, chats: list[Chat]
) -> None:
    first = start(chats, gateway.http_url, "--bot-first", key=api_key)
    conversation_id = first.expect(CONVERSATION.pattern).group(1)
    first.expect("bot> " + ANSI + "Hello! I am the Captivate Chat demo agent")
    first.say("remember me")
    first.expect("You said: remember me")
    first.expect(
        PROMPT
    )  # back at the prompt: a ^D typed while a line is printed would be the tty's, not ours
    first.child.sendeof()  # Ctrl+D leaves like /quit
    assert first.exit_status() == 0

    again = start(chats, gateway.http_url, "--conversation", conversation_id, key=api_key)
    again.expect(f"resumed conversation {conversation_id}")
    again.say("/transcript")
    again.expect(r"bot: Hello! I am the Captivate Chat demo agent")
    again.expect(r"user: remember me\r")
    again.say("and again")
    again.expect("You said: and again")
    again.say("/quit")
    assert again.exit_status() == 0


def test_other_tabs_messages_leave_the_typed_line_intact_and_a_delete_ends_the_chat(
    gateway: GatewayProcess, api_key: str, chats: list[Chat]
) -> None:
    chat = start(chats, gateway.http_url, key=api_key)
    conversation_id = chat.expect(CONVERSATION.pattern).group(1)
    chat.expect(PROMPT)
    chat.child.send("hel")  # typed, not sent
    chat.expect("hel")

    async def other_tab(delete: bool = False) -> None:
        async with CaptivateChatAPI(api_key, base_url=gateway.http_url) as api:
            conversation = await api.get_conversation(conversation_id)
            if delete:
                await conversation.delete()
            else:
                await conversation.send_message("ping from another tab")

    asyncio.run(other_tab())
    chat.expect("user \\(elsewhere\\)> " + ANSI + "ping from another tab")
    chat.expect("You said: ping from another tab")
    chat.expect(PROMPT + ANSI + "hel")  # the prompt is redrawn below, with what was typed so far
    chat.child.sendline("lo")
    chat.expect("You said: hello\r")

    asyncio.run(other_tab(delete=True))  # the conversation ends: the chat says so and leaves
    chat.expect(r"\[deleted")
    chat.expect(r"\[the conversation was deleted\]")
    assert chat.exit_status() == 0


def test_reconnecting_and_connected_are_shown_when_the_gateway_restarts(
    tmp_path: Path, chats: list[Chat]
) -> None:
    key = new_key()
    database = tmp_path / "restart.db"
    gateway = GatewayProcess(database, [key]).start()
    try:
        chat = start(chats, gateway.http_url, key=key)
        chat.say("before")
        chat.expect("You said: before")
        gateway.stop()
        chat.expect(r"\[reconnecting…\]")
        gateway = GatewayProcess(database, [key], port=gateway.port).start()
        chat.expect(r"\[connected\]", timeout=30)
        chat.say("after")
        chat.expect("You said: after")
        chat.say("/quit")
        assert chat.exit_status() == 0
    finally:
        gateway.stop()


def invoke(*args: str, key: str | None) -> Result:
    """The ``chat`` command run in this process (stdin is not a terminal here): for what ends before any chat."""
    return CliRunner().invoke(app, ["chat", *args], env={"CAPTIVATE_API_KEY": key})


def test_an_unknown_conversation_exits_with_a_clear_message(gateway: GatewayProcess, api_key: str) -> None:
    result = invoke("--url", gateway.http_url, "--conversation", "no-such-conversation", key=api_key)
    assert result.exit_code == 1
    assert "error: conversation no-such-conversation was not found" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_refused_key_exits_with_a_clear_message(gateway: GatewayProcess) -> None:
    wrong = new_key()
    result = invoke("--url", gateway.http_url, "--key", wrong, key=None)
    assert result.exit_code == 1
    assert "error: the API key was refused by" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert wrong not in result.output


def test_no_key_a_bad_url_and_an_unreachable_gateway_are_clear_errors() -> None:
    missing = invoke("--url", "http://127.0.0.1:9", key=None)
    assert missing.exit_code == 2 and "error: an API key is needed" in missing.stderr
    bad_url = invoke("--url", "ftp://127.0.0.1:9", key=new_key())
    assert bad_url.exit_code == 2 and "error: --url 'ftp://127.0.0.1:9'" in bad_url.stderr
    unreachable = invoke("--url", "http://127.0.0.1:9", key=new_key())
    assert unreachable.exit_code == 1 and "error: cannot connect to http://127.0.0.1:9" in unreachable.stderr


def test_help_never_shows_the_key_from_the_environment() -> None:
    key = new_key()
    result = invoke("--help", key=key)
    assert result.exit_code == 0 and "--bot-first" in result.output and "CAPTIVATE_API_KEY" in result.output
    assert key not in result.output


def run_piped(url: str, key: str, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAPTIVATE_API_KEY": key}
    return run_cli(["chat", "--url", url, *args], env, stdin)  # forked in the suite (harness/forkserver.py)


def test_without_a_terminal_lines_are_read_from_stdin(gateway: GatewayProcess, api_key: str) -> None:
    result = run_piped(gateway.http_url, api_key, "hello\ntable\n/transcript\n", "--bot-first")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "\x1b" not in result.stdout  # plain text: no prompt, no colours
    assert lines.index(
        "bot> Hello! I am the Captivate Chat demo agent. Type 'help' to see what I can do."
    ) < lines.index("bot> You said: hello")
    assert ["bot> a | b", "     --+--", "     1 | 2"] == lines[lines.index("bot> You said: table") + 1 :][:3]
    assert "--- transcript: 6 messages ---" in lines


def test_attach_in_a_terminal(
    gateway: GatewayProcess, api_key: str, chats: list[Chat], tmp_path: Path
) -> None:
    report = tmp_path / "report.txt"
    report.write_text("quarterly numbers\n")
    chat = start(chats, gateway.http_url, key=api_key)
    chat.say(f"/attach {report} the report")
    chat.expect(r"\[uploading report\.txt: 18 of 18 bytes\]")
    chat.expect(r"\[attached report\.txt \(text/plain\): 18 characters of text\]")
    chat.expect("bot> " + ANSI + "You said: the report")
    chat.say("/transcript")
    chat.expect(r"file: report\.txt \(text/plain\) http://127\.0\.0\.1:\d+/files/")
    chat.say("/quit")
    assert chat.exit_status() == 0
    assert api_key not in chat.screen.getvalue() and "Traceback" not in chat.screen.getvalue()


def test_attach_uploads_a_file_with_progress_and_sends_it(
    gateway: GatewayProcess, api_key: str, tmp_path: Path
) -> None:
    notes = tmp_path / "my notes.txt"
    notes.write_text("the word is Quokka\n")
    size = notes.stat().st_size
    script = f'/attach "{notes}" see the notes\n/attach {tmp_path}/missing.pdf\n/attach\n/transcript\n'
    result = run_piped(gateway.http_url, api_key, script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"[uploading my notes.txt: 0 of {size} bytes]" in lines
    assert f"[uploading my notes.txt: {size} of {size} bytes]" in lines
    assert "[attached my notes.txt (text/plain): 19 characters of text]" in lines
    assert "bot> You said: see the notes" in lines  # the agent got the message's text (not its JSON)
    assert f"[error: /attach: no such file: {tmp_path}/missing.pdf]" in lines
    assert "[error: /attach needs a file: /attach PATH [message]]" in lines
    shown = lines[next(i for i, line in enumerate(lines) if line.startswith("--- transcript: ")) :]
    assert any(re.fullmatch(r"  \S+ user: see the notes", line) for line in shown)
    assert any(
        re.fullmatch(r" +file: my notes\.txt \(text/plain\) http://127\.0\.0\.1:\d+/files/\S+", line)
        for line in shown
    )
    assert api_key not in result.stdout + result.stderr


# rendering -------------------------------------------------------------------------------------------


def test_html_is_stripped_to_text_with_links_lists_and_entities() -> None:
    html = (
        "<h1>Hi &amp; welcome</h1><script>alert(1)</script><p>Read <a href='https://x.test/doc'>the docs</a>"
        "<br>now</p><ul><li>one</li><li>two</li></ul>"
    )
    assert html_lines(html) == ["Hi & welcome", "Read the docs <https://x.test/doc>", "now", "- one", "- two"]


def test_tables_become_aligned_rows() -> None:
    html = "<table><tr><th>name</th><th>qty</th></tr><tr><td>apples</td><td>3</td></tr><tr><td>kiwi</td><td>12</td></tr></table>"
    assert render_content({"type": "table", "table": html}) == [
        "name   | qty",
        "-------+----",
        "apples | 3",
        "kiwi   | 12",
    ]


def test_each_message_type_renders_readably() -> None:
    assert render_content(
        {"type": "button", "buttons": {"title": "Pick", "options": ["A", {"text": "B"}]}}
    ) == [
        "Pick",
        "  1. A",
        "  2. B",
    ]
    assert render_content(
        {
            "type": "cards",
            "cards": [{"text": "T", "description": "D", "link": "https://x.test/"}, {"text": "U"}],
        }
    ) == ["- T: D", "  https://x.test/", "- U"]
    assert render_content({"type": "html", "html": "<b>bold</b> move"}) == ["bold move"]
    assert render_content(
        {
            "type": "files",
            "files": [{"type": "application/pdf", "url": "https://x.test/r.pdf", "filename": "r.pdf"}],
        }
    ) == ["file: r.pdf (application/pdf) https://x.test/r.pdf"]
    assert render_content([{"type": "text", "text": "two\nlines"}, "bare"]) == ["two", "lines", "bare"]
    assert render_content({"type": "poll", "question": "?"}) == ['[poll] {"type": "poll", "question": "?"}']


def test_each_event_kind_is_shown_distinctly() -> None:
    def shown(block: Block | None) -> list[str]:
        assert block is not None
        return [block.prefix + block.lines[0], *block.lines[1:]]

    assert shown(describe(BotMessage(content={"type": "text", "text": "hi"}), set())) == ["bot> hi"]
    assert shown(describe(LivechatMessage(content={"type": "text", "text": "a human"}), set())) == [
        "agent> a human"
    ]
    assert shown(describe(Action(actions=[{"id": "go", "data": {"n": 1}}]), set())) == [
        '[action go {"n": 1}]'
    ]
    assert shown(describe(ConversationUpdate(type="livechat_started", data=None), set())) == [
        "[livechat_started]"
    ]
    assert shown(describe(GeneralError(error_code=404, error_desc="gone"), set())) == ["[error 404: gone]"]
    echo = UserMessageEcho(content={"type": "text", "text": "mine"}, client_msg_id="m1")
    assert describe(echo, {"m1"}) is None  # our own message is already on screen as typed
    assert shown(describe(echo, set())) == ["user (elsewhere)> mine"]
