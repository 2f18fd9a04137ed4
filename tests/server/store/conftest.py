"""The store suite runs against SQLite (a file) and the real PostgreSQL (its own schema per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from captivate_chat_api.server.store import Store, store_from_url
from harness.gateway import postgres_schema, require_postgres


@pytest.fixture(scope="session")
def postgres() -> str:
    """The PostgreSQL URL; under CI a missing server is a failure, never a skip."""
    return require_postgres()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    base = request.getfixturevalue("postgres")
    for schema in postgres_schema("t"):
        yield f"{base}?schema={schema}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """For the checks of SQLite's own file format and pragmas (not parametrized: nothing to skip)."""
    return f"sqlite:///{tmp_path / 'sqlite.db'}"


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    opened = store_from_url(sqlite_url)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = store_from_url(database_url)
    await opened.open()
    yield opened
    await opened.close()
