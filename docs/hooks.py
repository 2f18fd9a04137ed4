"""MkDocs hook: pages write ``<!-- settings-reference -->`` where the generated settings table goes."""

from __future__ import annotations

from typing import Any

MARKER = "<!-- settings-reference -->"


def on_page_markdown(markdown: str, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from captivate_chat_api.server.config_file import reference
    from captivate_chat_api.server.settings import Settings

    return markdown.replace(MARKER, reference(Settings))
