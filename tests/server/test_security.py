"""Authentication and limits at the edge: revocation on live sockets, Origin allow-list, sockets per key,
conversation starts per minute, metadata size."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import pytest
import websockets

from harness.forkserver import run_cli
from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, list[str]]]:
    keys = [new_key(), new_key()]
    env = {
        "CAPTIVATE_ALLOWED_ORIGINS": "https://shop.example",
        "CAPTIVATE_MAX_SOCKETS_PER_KEY": "3",
        "CAPTIVATE_STARTS_PER_MINUTE_PER_KEY": "6",
        "CAPTIVATE_MAX_METADATA_BYTES": "200",
        "CAPTIVATE_REVALIDATE_SECONDS": "0.5",
    }
    gateway = GatewayProcess(tmp_path_factory.mktemp("sec") / "gw.db", keys, env=env).start()
    yield gateway, keys
    gateway.stop()


async def test_origin_allow_list(guarded: tuple[GatewayProcess, list[str]]) -> None:
    gateway, keys = guarded
    url = f"{gateway.ws_url}/dev?apiKey={keys[0]}"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    async with websockets.connect(url, origin="https://shop.example") as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["event"]["event_type"] == "socket_connected"
    async with websockets.connect(url) as ws:  # no Origin: not a browser, allowed
        assert json.loads(await ws.recv())["event"]["event_type"] == "socket_connected"


async def test_sockets_per_key_are_capped(guarded: tuple[GatewayProcess, list[str]]) -> None:
    gateway, keys = guarded
    url = f"{gateway.ws_url}/dev?apiKey={keys[1]}"
    open_sockets = [await websockets.connect(url) for _ in range(3)]
    try:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url)
        assert refused.value.response.status_code == 429
    finally:
        for ws in open_sockets:
            await ws.close()
    await asyncio.sleep(0.2)
    async with websockets.connect(url) as ws:  # a slot is free again
        await ws.recv()


async def test_conversation_starts_and_metadata_size_are_limited(
    guarded: tuple[GatewayProcess, list[str]],
) -> None:
    gateway, keys = guarded
    async with WireClient(gateway.http_url, gateway.ws_url, keys[0]) as client:
        big = await client.post("conversation_start", {"userId": "u", "metadata": {"blob": "x" * 300}})
        assert big.status_code == 413 and big.json()["error_code"] == 413
        cid = await client.start("u", metadata={"plan": "pro"})
        grown = await client.post(
            "metadata", {"conversation_id": cid, "metadata": {"private": {"notes": "y" * 300}}}
        )
        assert grown.status_code == 413
        assert (await client.ok("metadata_request", {"conversation_id": cid}))["metadata"] == {"plan": "pro"}
        statuses = [(await client.post("conversation_start", {"userId": "u"})).status_code for _ in range(8)]
        assert 429 in statuses


async def test_revoking_a_key_closes_its_live_sockets(tmp_path_factory: pytest.TempPathFactory) -> None:
    database = tmp_path_factory.mktemp("revoke") / "gw.db"
    doomed, spared = new_key(), new_key()
    gateway = GatewayProcess(database, [doomed, spared], env={"CAPTIVATE_REVALIDATE_SECONDS": "0.3"}).start()
    try:
        async with (
            websockets.connect(f"{gateway.ws_url}/dev?apiKey={doomed}") as victim,
            websockets.connect(f"{gateway.ws_url}/dev?apiKey={spared}") as bystander,
        ):
            await victim.recv()
            await bystander.recv()
            # the CLI as an operator runs it (a process of its own, forked in the suite), while the sockets wait
            listing = run_cli(
                ["keys", "list", "--database", f"sqlite:///{database}"],
                {"COLUMNS": "250", "PATH": ""},
                kind="gateway",
            )
            assert listing.returncode == 0, listing.stderr
            listed = listing.stdout
            row = next(line for line in listed.splitlines() if doomed[:10] in line)
            key_id = row.split()[1]
            revoked = run_cli(
                ["keys", "revoke", key_id, "--database", f"sqlite:///{database}"],
                dict(os.environ),
                kind="gateway",
            )
            assert revoked.returncode == 0, revoked.stderr
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(victim.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            await bystander.ping()  # the other key's socket is untouched
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{gateway.ws_url}/dev?apiKey={doomed}")
        assert refused.value.response.status_code == 401
    finally:
        gateway.stop()
