from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.cluster import RedisServer, drop_schema, missing, new_schema_url, postgres_available


@pytest.fixture(scope="module")
def postgres_schema() -> Iterator[str]:
    """A ``postgresql://…?schema=…`` URL of a schema of this module's own, dropped afterwards."""
    if not postgres_available():
        missing("PostgreSQL is not reachable (set CAPTIVATE_TEST_POSTGRES)")
    url, schema = new_schema_url()
    try:
        yield url
    finally:
        drop_schema(schema)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A ``redis-server`` of this module's own on a free loopback port."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
