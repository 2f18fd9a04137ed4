"""Entry points of ``captivate-chat console`` and ``captivate-chat handoff``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..errors import (
    AuthenticationError,
    CaptivateChatError,
    ChatConnectionError,
    NotFoundError,
    ProtocolError,
)
from ..terminal.blocks import system_block
from ..terminal.screen import LineReader, Screen, prompt_reader, stdin_reader
from .agent_api import AgentAPI
from .session import COMMANDS, ConsoleSession

FULL_ID_LENGTH = 32  # conversation ids are 32 hex digits; shorter is a prefix

# A help text that names the option, not a password.
TOKEN_HINT = (
    "check --token or CAPTIVATE_AGENT_TOKEN (a human token: captivate-chat tokens create --role human)"  # nosec B105
)


@dataclass(frozen=True, slots=True)
class ConsoleOptions:
    """The ``console`` command's options (``token`` is never printed)."""

    url: str
    token: str
    name: str | None = None


def _redacted(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def _error(exc: CaptivateChatError, url: str, conversation_id: str | None = None) -> str:
    if isinstance(exc, AuthenticationError):
        return f"the agent token was refused by {url} ({exc.error_code}); {TOKEN_HINT}"
    if isinstance(exc, NotFoundError) and conversation_id:
        return f"conversation {conversation_id} was not found (or belongs to another channel)"
    if isinstance(exc, ChatConnectionError):
        return f"cannot connect to {url}: {exc}"
    return str(exc)


def _api(url: str, token: str, name: str | None, screen: Screen) -> AgentAPI | None:
    if not token:
        screen.fail(
            "a human agent token is needed: --token TOKEN or the CAPTIVATE_AGENT_TOKEN environment variable"
        )
        return None
    if name is not None and not 0 < len(name) <= 100:
        screen.fail("--name must be 1 to 100 characters")
        return None
    try:
        return AgentAPI(url, token, name)
    except ValueError as exc:
        screen.fail(f"--url {url!r}: {exc}")
        return None


async def run_console(options: ConsoleOptions, screen: Screen, read: LineReader | None = None) -> int:
    """Connect (list, then the live feed), then run commands until ``/quit``; the exit status."""
    api = _api(options.url, options.token, options.name, screen)
    if api is None:
        return 2
    try:
        try:
            conversations = await api.conversations()
            feed = await api.open_feed()
        except CaptivateChatError as exc:
            screen.fail(_redacted(_error(exc, api.url), options.token))
            return 1
        session = ConsoleSession(api, feed, screen)
        names = " ".join(name.split()[0] for name in COMMANDS)
        screen.show(system_block(f"agent console on {api.url}. Commands: {names}"))
        session.show_listing(conversations)
        if read is None:
            read = prompt_reader(session.prompt) if screen.interactive else stdin_reader()
        return await session.run(read)
    finally:
        await api.close()


def console_main(options: ConsoleOptions) -> int:
    """Run the console in its own event loop; Ctrl+C leaves with status 130 and no traceback."""
    screen = Screen.for_terminal()
    try:
        if not screen.interactive:
            return asyncio.run(run_console(options, screen))
        from prompt_toolkit.patch_stdout import patch_stdout

        with patch_stdout(raw=True):  # stray prints (warnings) go above the prompt too
            return asyncio.run(run_console(options, screen))
    except KeyboardInterrupt:
        return 130


async def run_handoff(url: str, token: str, conversation_id: str, reason: str | None, screen: Screen) -> int:
    """Hand an AI conversation to the humans' queue; print its new state. 1 on a refusal, 2 on bad input."""
    api = _api(url, token, None, screen)
    if api is None:
        return 2
    try:
        conversation_id = await _full_id(api, conversation_id)
        record = await api.escalate(conversation_id, reason)
    except ProtocolError as exc:
        if exc.error_code == 409:
            screen.fail(f"conversation {conversation_id} cannot be handed to a human: {exc.error_desc} (409)")
        else:
            screen.fail(_redacted(_error(exc, api.url, conversation_id), token))
        return 1
    except CaptivateChatError as exc:
        screen.fail(_redacted(_error(exc, api.url, conversation_id), token))
        return 1
    finally:
        await api.close()
    screen.show(
        system_block(f"conversation {conversation_id}: {record.get('state')} (a human can take it now)")
    )
    return 0


async def _full_id(api: AgentAPI, given: str) -> str:
    """The id a prefix names among the waiting and live conversations (the short ids the console shows);
    anything else is taken as a full id."""
    if len(given) >= FULL_ID_LENGTH:
        return given
    wanted = given.lower()
    matches = [str(c["conversation_id"]) for c in await api.conversations()]
    matches = [cid for cid in matches if cid.lower().startswith(wanted)]
    if len(matches) > 1:
        raise ProtocolError(400, f"{given} matches {len(matches)} conversations: type more of the id")
    return matches[0] if matches else given


def handoff_main(url: str, token: str, conversation_id: str, reason: str | None = None) -> int:
    return asyncio.run(run_handoff(url, token, conversation_id, reason, Screen(False)))
