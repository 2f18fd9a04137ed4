"""PostgreSQL group commit at the store level: chat round trips (a user message with a ``client_msg_id``,
then the agent's guarded reply) by N concurrent conversations, straight on ``PostgresStore``: no gateway,
no sockets, no broker. A benchmark, not a test. Run from the repository root::

    .venv/bin/python bench/pg_group_commit.py                   # 8 and 1,000 conversations
    .venv/bin/python bench/pg_group_commit.py --conversations 1 100 1000 --seconds 10

Prints, per N: round trips/s, CPU ms per round trip of this process and of the PostgreSQL backends serving
the store (found by ``application_name``), statements and appends per statement (the writer's batches), and
a commit's latency on this machine (one autocommitted INSERT: what a batch waits for at least).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path

import asyncpg

from captivate_chat_api.server.store import NewEvent
from captivate_chat_api.server.store.postgres import PostgresStore

POSTGRES = os.environ.get("CAPTIVATE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")
AI = frozenset({"ai"})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def commit_ms() -> float:
    conn = await asyncpg.connect(POSTGRES)
    table = f"commit_probe_{uuid.uuid4().hex[:8]}"
    try:
        await conn.execute(f"CREATE TABLE {table} (x int)")
        began, n = time.perf_counter(), 200
        for _ in range(n):
            await conn.execute(f"INSERT INTO {table} VALUES (1)")  # nosec B608 -- our own table name
        return (time.perf_counter() - began) * 1000 / n
    finally:
        await conn.execute(f"DROP TABLE {table}")
        await conn.close()


async def run(conversations: int, seconds: float) -> str:
    schema = f"bench_gc_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(f"{POSTGRES}?schema={schema}&application_name={schema}")
    await store.open()
    probe = await asyncpg.connect(POSTGRES)
    try:
        channel = await store.create_channel_with_key("c", f"h-{schema}", "p")
        for i in range(conversations):
            await store.create_conversation(channel.id, f"c{i}", "u", {}, {}, {})
        trips = 0
        stop = 0.0

        async def converse(i: int) -> None:
            nonlocal trips
            n = 0
            while time.monotonic() < stop:
                n += 1
                text = f"m{n}"
                await store.append_user_message(
                    channel.id,
                    f"c{i}",
                    NewEvent("user_message", {"content": text}, "user", f"u{i}-{n}", text),
                )
                reply = NewEvent(
                    "bot_message", {"content": {"type": "text", "text": text}}, "bot", f"b{i}-{n}"
                )
                await store.transition(channel.id, f"c{i}", allowed_from=AI, events=[reply])
                if time.monotonic() < stop:
                    trips += 1

        pids = [
            r[0]
            for r in await probe.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", schema)
        ]
        pg0, me0 = sum(cpu_seconds(p) for p in pids), time.process_time()
        batches0, appends0 = store.writer.batches, store.writer.appends
        began = time.monotonic()
        stop = began + seconds
        await asyncio.gather(*(converse(i) for i in range(conversations)))
        took = time.monotonic() - began
        pg1, me1 = sum(cpu_seconds(p) for p in pids), time.process_time()
        batches = store.writer.batches - batches0
        appends = store.writer.appends - appends0
        trips = max(1, trips)
        return (
            f"{conversations:>13} {trips / took:>9.0f} {(me1 - me0) * 1000 / trips:>15.3f}"
            f" {(pg1 - pg0) * 1000 / trips:>13.3f} {batches / trips:>15.3f} {appends / max(1, batches):>17.1f}"
        )
    finally:
        await probe.close()
        await store.drop_schema()
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--conversations", type=int, nargs="+", default=[8, 1000])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}; one commit (autocommitted INSERT):"
        f" {await commit_ms():.2f} ms"
    )
    print(
        f"{'conversations':>13} {'trips/s':>9} {'CPU ms/trip: us':>15} {'PostgreSQL':>13} "
        f"{'statements/trip':>15} {'appends/statement':>17}"
    )
    for n in args.conversations:
        print(await run(n, args.seconds), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} after the run")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
