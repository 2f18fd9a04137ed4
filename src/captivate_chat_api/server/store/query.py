"""User-listing filters (ours): ``filter`` = equality on metadata keys, ``search`` = case-insensitive substring."""

from __future__ import annotations

from typing import Any


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def matches_query(metadata: dict[str, Any], filter: dict[str, Any], search: dict[str, Any]) -> bool:
    for key, expected in filter.items():
        if key not in metadata or metadata[key] != expected:
            return False
    for key, needle in search.items():
        if key not in metadata or _as_text(needle).lower() not in _as_text(metadata[key]).lower():
            return False
    return True
