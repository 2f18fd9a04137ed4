"""The gateway's file service: text extraction in worker processes, storage (local or S3), signed URLs,
records, TTL sweeping. Needs the ``files`` extra; without it the endpoints answer 501 naming it."""

from __future__ import annotations

from importlib.util import find_spec

EXTRA_MODULES = ("pypdf", "docx", "openpyxl", "pptx", "PIL", "pytesseract", "python_multipart")
INSTALL_HINT = "file uploads need the files extra: pip install 'captivate-chat-api[files]'"


def missing_modules() -> list[str]:
    """The modules of the ``files`` extra that are not installed (empty when it is complete)."""
    return [name for name in EXTRA_MODULES if not _found(name)]


def _found(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False
