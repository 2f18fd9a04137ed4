"""User-listing filters (ours): ``filter`` = equality on metadata keys, ``search`` = case-insensitive substring."""

from __future__ import annotations

import json
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


V1_MAX_CONVERSATIONS = 200
"""``get_user_conversations`` (v1, unpaginated) answers at most this many conversations, newest first;
v2 pages (``pagination.limit`` ≤ 100)."""

_SCALARS = (str, int, float, bool, type(None))


def sqlite_where(filter: dict[str, Any], search: dict[str, Any]) -> tuple[list[str], list[Any]] | None:
    """SQL conditions (and their parameters) for the listing's ``filter`` and ``search`` on SQLite's JSON
    functions; None when one cannot be said exactly in SQL (an object or list value): then the caller
    filters in Python. ``search`` matches text values, case-insensitively (SQLite folds ASCII letters)."""
    conditions: list[str] = []
    params: list[Any] = []
    for key, expected in filter.items():
        if '"' in key or not isinstance(expected, _SCALARS):
            return None
        path = f'$."{key}"'
        if isinstance(expected, str):
            conditions.append("json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = ?")
            params += [path, path, expected]
        elif expected is None:
            conditions.append("json_type(metadata, ?) = 'null'")
            params.append(path)
        else:  # as in Python, True == 1 and 1 == 1.0
            conditions.append(
                "json_type(metadata, ?) IN ('integer', 'real', 'true', 'false') AND json_extract(metadata, ?) = ?"
            )
            params += [path, path, float(expected)]
    for key, needle in search.items():
        if '"' in key:
            return None
        path = f'$."{key}"'
        conditions.append(
            "json_type(metadata, ?) = 'text' AND instr(lower(json_extract(metadata, ?)), ?) > 0"
        )
        params += [path, path, _as_text(needle).lower()]
    return conditions, params


def postgres_where(filter: dict[str, Any], search: dict[str, Any], first: int) -> tuple[list[str], list[Any]]:
    """The same for PostgreSQL (``jsonb``: values compared as JSON, objects and lists too); parameters are
    numbered from ``$first``. ``search`` matches text values, case-insensitively."""
    conditions: list[str] = []
    params: list[Any] = []
    n = first
    for key, expected in filter.items():
        conditions.append(f"(metadata::jsonb -> ${n}::text) = ${n + 1}::jsonb")
        params += [key, json.dumps(expected)]
        n += 2
    for key, needle in search.items():
        conditions.append(
            f"jsonb_typeof(metadata::jsonb -> ${n}::text) = 'string' AND strpos(lower(metadata::jsonb ->> ${n}::text), ${n + 1}) > 0"
        )
        params += [key, _as_text(needle).lower()]
        n += 2
    return conditions, params
