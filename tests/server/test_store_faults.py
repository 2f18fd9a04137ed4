"""Store faults say what happened (507 disk full, 503 + Retry-After unreachable / timed out / locked), one
log line per episode, readiness that follows the write path within 2 s, NUL refused at the boundary."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from captivate_chat_api.server import Settings, create_app
from captivate_chat_api.server.serve import GatewayServer, config_for
from harness.faultproxy import FaultProxy
from harness.gateway import POSTGRES_URL, GatewayProcess, new_key, postgres_schema
from harness.wire import MESSAGE_PATH, envelope, tls


def start_body(user: str = "u1") -> dict[str, object]:
    return envelope("conversation_start", {"userId": user})


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
async def local_gateway(tmp_path: Path) -> AsyncIterator[tuple[str, str, object, Captured]]:
    """A gateway in this process (its store reachable, to limit the file's size), on a loopback port."""
    key = new_key()
    settings = Settings(
        host="127.0.0.1",
        port=0,
        database=f"sqlite:///{tmp_path / 'gw.db'}",
        api_keys=[key],
        access_log=False,
        create_dev_key=False,
        revalidate_seconds=0,
    )
    app = create_app(settings)
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = GatewayServer(config_for(settings, app), app, lambda host, port: bound.set_result(port))
    captured = Captured()
    package_log = logging.getLogger("captivate_chat_api")
    level = package_log.level
    package_log.addHandler(captured)
    package_log.setLevel(logging.DEBUG)
    task = asyncio.create_task(server.serve())
    try:
        port = await asyncio.wait_for(bound, 20)
        yield f"http://127.0.0.1:{port}", key, app, captured
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)
        package_log.removeHandler(captured)
        package_log.setLevel(level)


async def test_sqlite_disk_full_is_507_logged_once_and_readiness_follows(local_gateway) -> None:  # type: ignore[no-untyped-def]
    url, key, app, captured = local_gateway
    store = app.state.gateway.store
    async with httpx.AsyncClient(verify=tls(), base_url=url, headers={"x-api-key": key}, timeout=10) as http:
        assert (await http.post(MESSAGE_PATH, json=start_body())).status_code == 200
        assert (await http.get("/readyz")).status_code == 200

        def limit(conn: sqlite3.Connection, pages: int | None) -> None:
            count = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages or count}")

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(store._writer, limit, store._wconn, None)  # the file may not grow any more
        big = {"userId": "u2", "metadata": {"pad": "x" * 15_000}}
        answers = [
            await http.post(MESSAGE_PATH, json=envelope("conversation_start", {**big, "userId": f"u{i}"}))
            for i in range(20)
        ]
        assert {a.status_code for a in answers} == {507}, {a.status_code for a in answers}
        assert answers[0].json() == {"error_code": 507, "error_desc": answers[0].json()["error_desc"]}
        assert "insufficient storage" in answers[0].json()["error_desc"]
        not_ready = await http.get("/readyz")
        assert not_ready.status_code == 503 and "disk full" in not_ready.json()["store_write"]

        faults = [r for r in captured.records if "store fault" in r.getMessage()]
        assert len(faults) == 1, [r.getMessage() for r in faults]  # one line for 20 refusals, no traceback
        assert not any(r.exc_info for r in captured.records)

        await loop.run_in_executor(store._writer, limit, store._wconn, 1_000_000)  # room again
        assert (await http.post(MESSAGE_PATH, json=envelope("conversation_start", big))).status_code == 200


async def test_a_held_sqlite_lock_fails_writes_fast_with_503_and_reads_carry_on(tmp_path: Path) -> None:
    database = tmp_path / "gw.db"
    key = new_key()
    # a 0.5 s busy timeout (not 1 s): the same bound on writes and readiness, 1.5 s sooner
    gateway = GatewayProcess(database, [key], env={"CAPTIVATE_SQLITE_BUSY_TIMEOUT": "0.5"}).start()
    try:
        async with httpx.AsyncClient(
            verify=tls(), base_url=gateway.http_url, headers={"x-api-key": key}, timeout=30
        ) as http:
            started = (await http.post(MESSAGE_PATH, json=start_body())).json()["conversation_id"]
            holder = sqlite3.connect(database, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            try:
                began = time.monotonic()
                answers = await asyncio.gather(
                    *(http.post(MESSAGE_PATH, json=start_body(f"w{i}")) for i in range(8))
                )
                took = time.monotonic() - began
                assert {a.status_code for a in answers} == {503}, [a.text for a in answers]
                assert all(a.headers.get("retry-after") for a in answers)
                assert took < 3.0, took  # bounded: not 8 waits in turn (4 s)
                read = await http.get("/api/transcript", params={"conversation_id": started})
                assert read.status_code == 200
                began = time.monotonic()
                ready = await http.get("/readyz")
                assert ready.status_code == 503 and time.monotonic() - began < 2.5
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert (await http.post(MESSAGE_PATH, json=start_body())).status_code == 200
    finally:
        gateway.stop()
    assert "Traceback" not in gateway.logs()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema("t")


async def test_a_silent_postgres_fails_fast_with_503_and_the_gateway_recovers(postgres_url: str) -> None:
    schema = postgres_url
    from urllib.parse import urlsplit

    upstream = urlsplit(POSTGRES_URL)
    async with FaultProxy(upstream.hostname or "127.0.0.1", upstream.port or 5432) as proxy:
        url = (
            POSTGRES_URL.replace(f"{upstream.hostname}:{upstream.port}", f"127.0.0.1:{proxy.port}")
            + f"?schema={schema}"
        )
        key = new_key()
        env = {
            # 0.5 s (not 1 s): the client gives up on a silent statement 1 s after that, 1.5 s in all
            "CAPTIVATE_PG_STATEMENT_TIMEOUT": "0.5",
            "CAPTIVATE_PG_ACQUIRE_TIMEOUT": "0.5",
            "CAPTIVATE_PG_CONNECT_TIMEOUT": "1",
        }
        gateway = GatewayProcess(url, [key], env=env)
        await asyncio.to_thread(gateway.start)
        try:
            async with httpx.AsyncClient(
                verify=tls(), base_url=gateway.http_url, headers={"x-api-key": key}, timeout=30
            ) as http:
                assert (await http.post(MESSAGE_PATH, json=start_body())).status_code == 200
                # NUL in an id: 400 on PostgreSQL as on SQLite, and the keep-alive connection carries on
                nul = await http.get("/api/transcript", params={"conversation_id": "a\x00b"})
                assert nul.status_code == 400
                nul_event = await http.post(
                    MESSAGE_PATH, json=envelope("get_user_conversations", {"userId": "u\x001"})
                )
                assert nul_event.status_code == 400, nul_event.text

                proxy.black_hole = True
                began = time.monotonic()
                answers = await asyncio.gather(
                    *(http.post(MESSAGE_PATH, json=start_body(f"p{i}")) for i in range(6))
                )
                took = time.monotonic() - began
                assert {a.status_code for a in answers} == {503}, [a.text for a in answers]
                assert all(a.headers.get("retry-after") for a in answers)
                assert took < 8.0, took
                began = time.monotonic()
                assert (await http.get("/readyz")).status_code == 503
                assert time.monotonic() - began < 2.5
                with pytest.raises(websockets.InvalidStatus) as refused:  # a key the cache does not know
                    await websockets.connect(f"{gateway.ws_url}/dev?apiKey={new_key()}", open_timeout=10)
                assert refused.value.response.status_code == 503

                proxy.black_hole = False
                proxy.cut()
                deadline = time.monotonic() + 20
                while True:
                    answer = await http.post(MESSAGE_PATH, json=start_body("back"))
                    if answer.status_code == 200 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                assert answer.status_code == 200, answer.text
                assert (await http.get("/readyz")).status_code == 200
        finally:
            await asyncio.to_thread(gateway.stop)
    logs = gateway.logs()
    assert "Traceback" not in logs
    assert logs.count("store fault (unavailable):") <= 2, logs[-3000:]


async def test_nul_in_a_static_path_is_404_and_a_half_sent_body_is_quiet(tmp_path: Path) -> None:
    key = new_key()
    gateway = GatewayProcess(tmp_path / "gw.db", [key]).start()
    try:
        async with httpx.AsyncClient(verify=tls(), base_url=gateway.http_url, timeout=10) as http:
            assert (await http.get("/static/favicon.svg%00.js")).status_code == 404
            assert (await http.get("/static/favicon.svg")).status_code == 200
        _reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(
            b"POST "
            + MESSAGE_PATH.encode()
            + b" HTTP/1.1\r\nhost: x\r\nx-api-key: "
            + key.encode()
            + b"\r\ncontent-length: 1000\r\n\r\n{"
        )
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()
        await asyncio.sleep(0.5)
    finally:
        gateway.stop()
    logs = gateway.logs()
    assert "Traceback" not in logs and "ERROR" not in logs, logs[-2000:]


async def test_the_sdk_retries_a_503_the_gateway_told_it_to_retry(tmp_path: Path) -> None:
    from captivate_chat_api import CaptivateChatAPI, ReconnectPolicy

    database = tmp_path / "gw.db"
    key = new_key()
    gateway = GatewayProcess(database, [key], env={"CAPTIVATE_SQLITE_BUSY_TIMEOUT": "0.5"}).start()
    try:
        api = CaptivateChatAPI(
            key,
            base_url=gateway.http_url,
            transport="http",
            retry=ReconnectPolicy(initial_delay=0.2, max_delay=1.0, max_attempts=10),
        )
        async with api:
            holder = sqlite3.connect(database, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")

            async def release_after_a_refusal() -> None:  # the lock is let go once a 503 was answered
                deadline = time.monotonic() + 20
                while " 503" not in gateway.logs() and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                holder.execute("ROLLBACK")
                holder.close()

            release = asyncio.create_task(release_after_a_refusal())
            try:
                conversation = await api.create_conversation(
                    "retried", mode="user-first"
                )  # not idempotent, yet safe
            finally:
                await release
            assert conversation.conversation_id
    finally:
        gateway.stop()
    assert "503" in gateway.logs()  # it was refused at least once before it went through
