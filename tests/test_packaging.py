"""The client-only install never needs the gateway's dependencies; the public API is deliberate."""

from __future__ import annotations

import subprocess
import sys

import captivate_chat_api

SERVER_ONLY = ("fastapi", "starlette", "uvicorn", "typer", "rich", "pydantic-settings", "platformdirs")


def test_importing_the_package_does_not_import_the_server_stack() -> None:
    # (httpx imports rich/click for its own CLI when they happen to be installed, so they are not checked here)
    code = (
        "import sys, captivate_chat_api, captivate_chat_api.protocol, captivate_chat_api.client\n"
        "server = [m for m in ('fastapi', 'starlette', 'uvicorn', 'typer', 'pydantic_settings', 'platformdirs')"
        " if m in sys.modules]\n"
        "assert not server, server\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_client_only_install_requires_none_of_the_server_stack() -> None:
    from importlib.metadata import requires

    base = [r for r in requires("captivate-chat-api") or [] if "extra ==" not in r]
    assert base, "the client has dependencies"
    for requirement in base:
        assert not requirement.lower().startswith(SERVER_ONLY), requirement


PUBLIC_NAMES = [
    "Action", "AgentError", "AuthenticationError", "BotMessage", "CaptivateChatAPI", "CaptivateChatError",
    "CaptivateChatManager", "ChatConnectionError", "ClientClosedError", "ConnectionState", "Conversation",
    "ConversationNotFound", "ConversationUpdate", "ConversationUpdateInfo", "ErrorInfo", "EventStream",
    "FileInput", "FileManager", "FileObject", "FileStorage", "GeneralError", "HandoffConflict",
    "LivechatMessage", "NotFoundError", "PageInfo", "PayloadTooLargeError", "PlatformEvent", "ProtocolError",
    "RateLimitError", "ReconnectPolicy", "RequestTimeoutError", "SentMessage", "ServerError",
    "TranscriptEntry", "UploadProgress", "UserActionEcho", "UserConversations", "UserMessageEcho",
    "WebhookVerificationError", "__version__",
]  # fmt: skip


def test_public_names() -> None:
    """The public surface is this list, no more, no less (a removal or an addition is a decision)."""
    assert captivate_chat_api.__all__ == PUBLIC_NAMES
    for name in captivate_chat_api.__all__:
        assert hasattr(captivate_chat_api, name), name
    assert captivate_chat_api.__version__


def test_a_client_only_install_is_told_which_extra_create_app_needs() -> None:
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None  # as on a client-only install\n"
        "try:\n"
        "    from captivate_chat_api.server import create_app\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'captivate-chat-api[server]'" in done.stdout and "fastapi" in done.stdout, done.stdout


def test_one_version_source() -> None:
    from importlib.metadata import version

    assert captivate_chat_api.__version__ == version("captivate-chat-api")
    from captivate_chat_api.server import create_app

    assert create_app().version == captivate_chat_api.__version__
