"""Secret redaction for log records, shared by the client and the gateway.

URLs carry the API key (``/dev?apiKey=…``) and agent tokens (``?token=…``); headers carry them too. A
:class:`RedactSecrets` filter rewrites a record before any handler sees it.
"""

from __future__ import annotations

import logging
import re

_PATTERNS = (
    re.compile(r"(?i)((?:api_?key|token|x-api-key|x-agent-token)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',}]+"),
    re.compile(r"(cc[ka]_)[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(\?)[^\s\"']+(?=[\s\"']|$)"),
    # a stored file's key is a capability (it can be presigned without a credential): its random part goes
    re.compile(r"(/files/[^\s/?]+/)[A-Za-z0-9_%\-]{16,}"),
)


def could_hold_a_secret(text: str) -> bool:
    """False when none of the patterns can match (what each needs: ``key`` or ``token`` in any case,
    ``cc``, ``?`` or ``/files/``): most log lines (an access line, a start-up line) are left as they are
    without four regular-expression passes."""
    if "?" in text or "cc" in text or "/files/" in text:
        return True
    lowered = text.lower()
    return "key" in lowered or "token" in lowered


def redact(text: str) -> str:
    if not could_hold_a_secret(text):
        return text
    text = _PATTERNS[0].sub(r"\1[REDACTED]", text)
    text = _PATTERNS[1].sub(r"\1[REDACTED]", text)
    text = _PATTERNS[2].sub(r"\1[REDACTED]", text)
    return _PATTERNS[3].sub(r"\1[REDACTED]", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
