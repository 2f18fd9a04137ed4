"""The chat itself: one conversation on screen, the typed commands, and the command's entry point."""

from __future__ import annotations

import asyncio
import getpass
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..client import CaptivateChatAPI, ConnectionState, Conversation, UploadProgress
from ..errors import AuthenticationError, CaptivateChatError, ChatConnectionError, NotFoundError
from ..protocol import ConversationUpdate, UserActionEcho, UserMessageEcho
from .blocks import Block, describe, error_block, metadata_block, system_block, transcript_block
from .screen import LineReader, Screen, prompt_reader, stdin_reader

COMMANDS = {
    "/attach": "/attach PATH [message]: upload a file and send it (quote a path with spaces)",
    "/transcript": "print the conversation's transcript",
    "/metadata": "print the conversation's public metadata",
    "/help": "list these commands",
    "/quit": "leave (Ctrl+D also does)",
}
REPLY_TIMEOUT = 15.0
"""Without a terminal, how long to wait for the agent's first reply to a line before reading the next."""
QUIET_PERIOD = 0.4
"""Without a terminal, a turn is over once nothing arrived for this long after the first reply."""


class ChatSession:
    """One conversation on screen: shows its events and the connection's state, runs the typed commands."""

    def __init__(self, api: CaptivateChatAPI, conversation: Conversation, screen: Screen) -> None:
        self.api = api
        self.conversation = conversation
        self.screen = screen
        self.own_messages: set[str] = set()
        self.replies = 0
        self.sent = 0
        """Messages sent so far (a line that sent nothing, e.g. a failed ``/attach``, has no reply to wait for)."""
        self.deleted = False
        self.quitting = False
        self._activity = asyncio.Event()
        self._was_reconnecting = False
        self._stream = conversation.events()
        api.on_state_change(self._state_changed)

    def _state_changed(self, state: ConnectionState) -> None:
        if self.quitting:
            return
        if state is ConnectionState.RECONNECTING:
            self._was_reconnecting = True
            self.screen.show(system_block("[reconnecting…]"))
        elif state is ConnectionState.CONNECTED and self._was_reconnecting:
            self._was_reconnecting = False
            self.screen.show(system_block("[connected]"))
        elif state is ConnectionState.CLOSED:
            self.screen.show(Block("error", ["[disconnected: the connection could not be restored]"]))

    async def show_events(self) -> None:
        """Print every event of the conversation until it ends (deleted, or the connection given up)."""
        async for event in self._stream:
            block = describe(event, self.own_messages)
            if isinstance(event, ConversationUpdate) and event.type == "deleted":
                self.deleted = True
            if block is not None:
                self.screen.show(block)
            if not isinstance(event, UserMessageEcho | UserActionEcho):
                self.replies += 1
                self._activity.set()

    async def settle(self, seen: int) -> None:
        """Wait for the agent's reply to the last line (first event, then a quiet moment), bounded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLY_TIMEOUT
        while loop.time() < deadline:
            self._activity.clear()
            if self.replies == seen:
                timeout = deadline - loop.time()
            else:
                timeout = min(QUIET_PERIOD, deadline - loop.time())
            try:
                await asyncio.wait_for(self._activity.wait(), max(timeout, 0))
            except TimeoutError:
                if self.replies != seen:
                    return

    async def handle(self, line: str) -> bool:
        """Run one input line; False once the user asked to quit."""
        text = line.strip()
        if not text:
            return True
        command = text.lower()
        try:
            if command == "/quit":
                return False
            if command == "/help":
                self.screen.show(Block("info", [f"{name:<12} {what}" for name, what in COMMANDS.items()]))
            elif command == "/transcript":
                self.screen.show(transcript_block(await self.conversation.get_transcript()))
            elif command == "/metadata":
                self.screen.show(metadata_block(await self.conversation.get_metadata()))
            elif command == "/attach" or command.startswith("/attach "):
                await self.attach(text[len("/attach") :].strip())
            else:
                msg_id = str(uuid.uuid4())
                self.own_messages.add(msg_id)
                await self.conversation.send_message(line, client_msg_id=msg_id)
                self.sent += 1
        except CaptivateChatError as exc:
            self.screen.show(error_block(exc))
        return True

    async def attach(self, arguments: str) -> None:
        """``/attach PATH [message]``: upload the file (streamed, with progress), then send it."""
        try:
            words = shlex.split(arguments)
        except ValueError as exc:
            self.screen.show(error_block(f"/attach: {exc}"))
            return
        if not words:
            self.screen.show(error_block("/attach needs a file: /attach PATH [message]"))
            return
        path = Path(words[0]).expanduser()
        if not path.is_file():
            self.screen.show(error_block(f"/attach: no such file: {path}"))
            return
        steps: set[int] = set()

        def progress(p: UploadProgress) -> None:
            step = int((p.fraction or 0) * 4)  # a line at the start, each quarter, and the end
            if step not in steps:
                steps.add(step)
                total = f" of {p.total}" if p.total is not None else ""
                self.screen.show(system_block(f"[uploading {p.filename}: {p.sent}{total} bytes]"))

        files = await self.conversation.file_manager.create(path, on_progress=progress)
        self.screen.show(
            system_block(
                f"[attached {files.filename} ({files.file_type}): {len(files.text_content)} characters of text]"
            )
        )
        msg_id = str(uuid.uuid4())
        self.own_messages.add(msg_id)
        await self.conversation.send_message(
            {"type": "text", "text": " ".join(words[1:]), "files": files}, client_msg_id=msg_id
        )
        self.sent += 1

    async def read_loop(self, read: LineReader, *, greeting: bool = False) -> int:
        """Handle input lines until ``/quit`` or the end of input; without a terminal, one turn at a time."""
        if greeting and not self.screen.interactive:
            await self.settle(0)
        while True:
            line = await read()
            if line is None:
                break
            seen, sent = self.replies, self.sent
            if not await self.handle(line):
                break
            if not self.screen.interactive and self.sent != sent:
                await self.settle(seen)  # a message was sent: show its answer before reading on
        return 0

    async def run(self, read: LineReader, *, greeting: bool = False) -> int:
        """Read and show until ``/quit`` or end of input (0), or until the conversation ends (1, 0 if
        deleted). ``greeting``: without a terminal, wait for the agent's first words before reading."""
        events = asyncio.create_task(self.show_events())
        reading = asyncio.create_task(self.read_loop(read, greeting=greeting))
        done, _ = await asyncio.wait({events, reading}, return_when=asyncio.FIRST_COMPLETED)
        self.quitting = True  # from here on, closing the client is expected: no "[disconnected]"
        if reading in done:
            events.cancel()
            self._stream.close()
            await asyncio.gather(events, return_exceptions=True)
            return reading.result()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        if events.exception() is not None:
            self.screen.show(error_block(f"the chat stopped: {events.exception()!r}"))
            return 1
        if self.deleted:
            self.screen.show(system_block("[the conversation was deleted]"))
            return 0
        return 1


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """The ``chat`` command's options (``key`` is never printed)."""

    url: str
    key: str
    user_id: str | None = None
    bot_first: bool = False
    conversation_id: str | None = None


def default_user_id() -> str:
    try:
        return f"terminal-{getpass.getuser()}"
    except (OSError, KeyError):
        return "terminal-user"


def _redacted(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text


async def _open(api: CaptivateChatAPI, options: ChatOptions) -> tuple[Conversation, str]:
    if options.conversation_id:
        conversation = await api.get_conversation(options.conversation_id)
        return conversation, f"resumed conversation {conversation.conversation_id}"
    user = options.user_id or default_user_id()
    conversation = await api.create_conversation(
        user, mode="bot-first" if options.bot_first else "user-first"
    )
    return conversation, f"conversation {conversation.conversation_id} (user {user})"


def _startup_error(exc: CaptivateChatError, options: ChatOptions) -> str:
    if isinstance(exc, AuthenticationError):
        return (
            f"the API key was refused by {options.url} ({exc.error_code}); check --key or CAPTIVATE_API_KEY"
        )
    if isinstance(exc, NotFoundError) and options.conversation_id:
        return f"conversation {options.conversation_id} was not found (or belongs to another key)"
    if isinstance(exc, ChatConnectionError):
        return f"cannot connect to {options.url}: {exc}"
    return f"could not start the chat with {options.url}: {exc}"


async def run_chat(options: ChatOptions, screen: Screen, read: LineReader | None = None) -> int:
    """Connect, start or resume the conversation, then chat; the exit status (0: the user quit)."""
    try:
        api = CaptivateChatAPI(options.key, base_url=options.url)
    except ValueError as exc:
        screen.fail(f"--url {options.url!r}: {exc}")
        return 2
    try:
        try:
            await api.connect()
            conversation, title = await _open(api, options)
        except CaptivateChatError as exc:
            screen.fail(_redacted(_startup_error(exc, options), options.key))
            return 1
        session = ChatSession(api, conversation, screen)
        names = " ".join(COMMANDS)
        screen.show(system_block(f"{title} on {options.url}. Commands: {names}"))
        if read is None:
            read = prompt_reader() if screen.interactive else stdin_reader()
        return await session.run(read, greeting=options.bot_first and not options.conversation_id)
    finally:
        await api.close()


def chat_main(options: ChatOptions) -> int:
    """Run the chat in its own event loop; Ctrl+C leaves with status 130 and no traceback."""
    if not options.key:
        Screen(False).fail("an API key is needed: --key KEY or the CAPTIVATE_API_KEY environment variable")
        return 2
    screen = Screen.for_terminal()
    try:
        if not screen.interactive:
            return asyncio.run(run_chat(options, screen))
        from prompt_toolkit.patch_stdout import patch_stdout

        with patch_stdout(raw=True):  # stray prints (warnings) go above the prompt too
            return asyncio.run(run_chat(options, screen))
    except KeyboardInterrupt:
        return 130
