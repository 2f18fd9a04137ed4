"""Versioned SQL migrations: ``migrations/<dialect>/NNNN_name.sql`` applied in order, each once.

A database made by an older release opens in a newer one: :func:`pending` lists what it lacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load(dialect: str) -> list[Migration]:
    folder = resources.files(__package__).joinpath("migrations", dialect)
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations for {dialect} are not numbered 1..N: {versions}")
    return found


def pending(dialect: str, applied: set[int]) -> list[Migration]:
    return [m for m in load(dialect) if m.version not in applied]
