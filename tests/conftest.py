from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness.gateway import GatewayProcess, new_key


@pytest.fixture(scope="module")
def tenant_keys() -> list[str]:
    """Two API keys, each its own channel (tenant)."""
    return [new_key(), new_key()]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, tenant_keys: list[str]) -> Iterator[GatewayProcess]:
    """A real gateway process for the module, on a free port, with a fresh SQLite file."""
    db = tmp_path_factory.mktemp("gw") / "gateway.db"
    process = GatewayProcess(db, tenant_keys).start()
    yield process
    process.stop()


@pytest.fixture
def api_key(tenant_keys: list[str]) -> str:
    return tenant_keys[0]
