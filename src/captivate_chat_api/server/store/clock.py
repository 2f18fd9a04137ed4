"""Timestamps as the transcript carries them: ISO 8601, UTC, milliseconds, ``Z``."""

from __future__ import annotations

import time

_second: tuple[int, str] = (-1, "")
"""The last whole second formatted, and its text (one tuple: threads read and replace it whole)."""


def utc_now() -> str:
    """``2026-01-31T12:00:00.123Z`` (the seconds are formatted once per second, not once per call)."""
    global _second
    now = time.time()
    whole = int(now)
    second, text = _second
    if whole != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    return f"{text}.{int((now - whole) * 1000):03d}Z"
