"""``captivate-chat chat``: an interactive terminal chat built on the async client SDK.

``render`` turns message content into plain lines, ``blocks`` decides how each event and command result is
shown, ``screen`` is the terminal (prompt-toolkit, or plain stdin/stdout when not a TTY), ``chat`` runs it.
"""

from .chat import ChatOptions, ChatSession, chat_main, run_chat

__all__ = ["ChatOptions", "ChatSession", "chat_main", "run_chat"]
