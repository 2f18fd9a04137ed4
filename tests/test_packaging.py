"""The client-only install never needs the gateway's dependencies; the public API is deliberate."""

from __future__ import annotations

import subprocess
import sys

import captivate_chat_api


def test_importing_the_package_does_not_import_the_server_stack() -> None:
    code = (
        "import sys, captivate_chat_api, captivate_chat_api.protocol\n"
        "server = [m for m in ('fastapi', 'starlette', 'uvicorn', 'typer', 'rich', 'pydantic_settings') if m in sys.modules]\n"
        "assert not server, server\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names() -> None:
    for name in captivate_chat_api.__all__:
        assert hasattr(captivate_chat_api, name), name
    assert captivate_chat_api.__version__
