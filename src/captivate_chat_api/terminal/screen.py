"""The terminal: where blocks are printed and where input lines come from.

On a terminal, prompt-toolkit prints above the prompt, so an incoming message never corrupts the line being
typed; without one, plain lines go to stdout and input lines are read from stdin.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from .blocks import Block

STYLES = {
    "bot": "ansigreen bold",
    "agent": "ansimagenta bold",
    "echo": "ansicyan",
    "action": "ansiblue",
    "update": "ansiyellow",
    "info": "ansiyellow",
    "error": "ansired",
    "prompt": "ansicyan bold",
}


class Screen:
    """Where lines go: plain ``print`` without a terminal; prompt-toolkit above the prompt with one."""

    def __init__(self, interactive: bool, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.interactive = interactive
        self._out = out
        self._err = err
        self._style: Any = None

    @classmethod
    def for_terminal(cls) -> Screen:
        return cls(sys.stdin.isatty() and sys.stdout.isatty())

    def show(self, block: Block) -> None:
        pad = " " * len(block.prefix)
        lines = [(block.prefix if i == 0 else pad, line) for i, line in enumerate(block.lines)]
        if not self.interactive:
            out = self._out or sys.stdout
            out.write("".join(f"{head}{line}\n" for head, line in lines))
            out.flush()
            return
        from prompt_toolkit import print_formatted_text
        from prompt_toolkit.formatted_text import FormattedText
        from prompt_toolkit.styles import Style

        self._style = self._style or Style.from_dict(STYLES)
        fragments: list[tuple[str, str]] = []
        for head, line in lines:
            if block.prefix:
                fragments += [(f"class:{block.style}", head), ("", line + "\n")]
            else:
                fragments.append((f"class:{block.style}", line + "\n"))
        print_formatted_text(FormattedText(fragments), end="", style=self._style)

    def fail(self, message: str) -> None:
        """A fatal message, on stderr."""
        err = self._err or sys.stderr
        err.write(f"error: {message}\n")
        err.flush()


LineReader = Callable[[], Awaitable[str | None]]
"""The next input line, or None at the end of input."""


def stdin_reader() -> LineReader:
    """Lines from a non-terminal stdin, read by a daemon thread (a blocked read never holds up exit)."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def pump() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        except (OSError, ValueError, RuntimeError):  # stdin closed, or the loop is gone
            pass
        try:
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except RuntimeError:
            pass

    threading.Thread(target=pump, name="stdin-reader", daemon=True).start()
    return queue.get


def prompt_reader(prompt: str | Callable[[], str] = "you> ") -> LineReader:
    """Lines typed at a prompt-toolkit prompt (history with the arrow keys); Ctrl+D ends the input.
    ``prompt`` may be a function: it is asked again each time the prompt is drawn."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.formatted_text import FormattedText
    from prompt_toolkit.styles import Style

    session: PromptSession[str] = PromptSession(style=Style.from_dict(STYLES))

    def message() -> FormattedText:
        return FormattedText([("class:prompt", prompt() if callable(prompt) else prompt)])

    async def read() -> str | None:
        try:
            return await session.prompt_async(message)
        except (EOFError, KeyboardInterrupt):  # Ctrl+D, Ctrl+C: leave like /quit
            return None

    return read
