"""An AI turn superseded by a human take-over changes nothing: its metadata and its events are stored
together, in the store step that checks the hand-off state, or not at all (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from harness.gateway import POSTGRES_URL, GatewayProcess, new_key, postgres_schema
from harness.tokens import add_token
from harness.wire import WireClient, tls

TESTS = str(Path(__file__).parents[1])
AGENT_SECONDS = 0.5
"""How long the gateway's agent thinks before it answers (0.5 s, not 1 s: a take-over still lands well
inside it, and the waits around the answer keep their margins)."""


class Desk:
    def __init__(
        self, gateway: GatewayProcess, key: str, token: str, database: Path | str, schema: str | None = None
    ) -> None:
        self.gateway, self.key, self.token, self.database = gateway, key, token, database
        self.schema = schema

    @contextlib.asynccontextmanager
    async def hold_writes(self, conversation_id: str) -> AsyncIterator[None]:
        """Another process holds what the gateway's next write to the conversation needs: SQLite's write
        lock, or the conversation's row lock on PostgreSQL."""
        if self.schema is None:
            holder = sqlite3.connect(self.database, isolation_level=None)
            try:
                holder.execute("BEGIN IMMEDIATE")
                yield
                holder.execute("ROLLBACK")
            finally:
                holder.close()
            return
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute(
                f'SELECT 1 FROM "{self.schema}".conversations WHERE id = $1 FOR UPDATE', conversation_id
            )
            yield
            await transaction.rollback()
        finally:
            await conn.close()

    def user(self) -> WireClient:
        return WireClient(self.gateway.http_url, self.gateway.ws_url, self.key)

    def human(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=tls(),
            base_url=f"{self.gateway.http_url}/api/agent",
            headers={"x-agent-token": self.token},
            timeout=15,
        )


def start(database: Path | str, url: str | None = None) -> tuple[GatewayProcess, str, str]:
    key = new_key()
    gateway = GatewayProcess(
        url or database,
        [key],
        env={"SLOW_AGENT_SECONDS": f"{AGENT_SECONDS:g}"},
        args=["--agent", "python:agents_for_tests:slow_ticketer"],
        # found in the gateway's working directory (as a user's ./my_agent.py): no PYTHONPATH, so the gateway
        # forks from the fork server instead of a fresh interpreter (~1.5 CPU-s less per gateway)
        cwd=Path(TESTS),
    ).start()
    return gateway, key, asyncio.run(add_token(url or database, key, "human", "Alice"))


@pytest.fixture(scope="module")
def sqlite_desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    database = tmp_path_factory.mktemp("superseded") / "gw.db"
    gateway, key, token = start(database)
    try:
        yield Desk(gateway, key, token, database)
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def postgres_desk() -> Iterator[Desk]:
    for schema in postgres_schema("superseded"):
        url = f"{POSTGRES_URL}?schema={schema}"
        gateway, key, token = start(url, url)
        try:
            yield Desk(gateway, key, token, url, schema)
        finally:
            gateway.stop()


async def outcome(desk: Desk, user: WireClient, cid: str, text: str) -> tuple[dict[str, Any], bool]:
    """Once the turn is over (stored, or dropped as the log says): the conversation's metadata, and whether
    the turn's message is in the transcript."""
    for _ in range(100):
        entries = (await user.http.get("/api/transcript", params={"conversation_id": cid})).json()[
            "transcript"
        ]
        shown = any(
            isinstance(e["content"], dict) and e["content"].get("text") == f"late: {text}" for e in entries
        )
        if shown or f"dropped an agent reply in {cid}" in desk.gateway.logs():
            metadata = (await user.ok("metadata_request", {"conversation_id": cid}))["metadata"]
            return metadata, shown
        await asyncio.sleep(0.1)
    raise AssertionError("the turn neither stored nor dropped its answer")


async def a_late_answer_changes_nothing(desk: Desk) -> None:
    async with desk.user() as user, desk.human() as alice:
        cid = await user.start("late")
        await user.say(cid, "one")
        taken = await alice.post(f"/conversations/{cid}/take")  # while the agent is still thinking
        assert taken.status_code == 200, taken.text
        metadata, shown = await outcome(desk, user, cid, "one")
        assert not shown
        assert "ticket" not in metadata and "conversation_title" not in metadata
        assert (await alice.get(f"/conversations/{cid}")).json()["state"] == "human"


async def test_a_turn_answering_after_a_take_over_changes_nothing(sqlite_desk: Desk) -> None:
    await a_late_answer_changes_nothing(sqlite_desk)


async def test_a_turn_answering_after_a_take_over_changes_nothing_on_postgres(postgres_desk: Desk) -> None:
    await a_late_answer_changes_nothing(postgres_desk)


async def take_over_in_the_window(desk: Desk) -> None:
    """The take-over is queued at the store right behind the turn's own write (another process holds the
    lock both need meanwhile): the turn's metadata and messages are stored together or not at all, never
    the metadata alone (it was, when the state check, the metadata and the events were three writes)."""
    async with desk.user() as user, desk.human() as alice:
        cid = await user.start("window")
        await user.say(cid, "two")
        async with desk.hold_writes(cid):  # the agent answers at AGENT_SECONDS: its write waits for the lock
            await asyncio.sleep(AGENT_SECONDS + 0.5)
            take = asyncio.create_task(alice.post(f"/conversations/{cid}/take"))
            await asyncio.sleep(0.5)  # the take-over's write is in line behind the turn's
        taken = await take
        assert taken.status_code == 200, taken.text
        metadata, shown = await outcome(desk, user, cid, "two")
        assert ("ticket" in metadata) == shown, (metadata, shown)
        assert ("conversation_title" in metadata) == shown
        assert (await alice.get(f"/conversations/{cid}")).json()["state"] == "human"


async def test_a_take_over_never_lands_between_a_turns_metadata_and_its_events(sqlite_desk: Desk) -> None:
    await take_over_in_the_window(sqlite_desk)


async def test_a_take_over_never_lands_between_a_turns_metadata_and_its_events_on_postgres(
    postgres_desk: Desk,
) -> None:
    await take_over_in_the_window(postgres_desk)
