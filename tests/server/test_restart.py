"""Process death: what was acknowledged before SIGKILL is there after restart; SIGTERM closes with 1001."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest
import websockets

from harness.gateway import GatewayProcess, new_key
from harness.wire import MESSAGE_PATH, WireClient, envelope, tls


async def test_acknowledged_messages_survive_sigkill(tmp_path: Path) -> None:
    key = new_key()
    database = tmp_path / "crash.db"
    unthrottled = {"CAPTIVATE_RATE_PER_SOCKET": "0", "CAPTIVATE_RATE_PER_KEY": "0"}
    gateway = GatewayProcess(database, [key], env=unthrottled).start()
    acked: dict[str, list[str]] = {}
    try:
        async with WireClient(gateway.http_url, gateway.ws_url, key) as client:
            conversations = [await client.start(f"crash-{i}") for i in range(3)]

            async def sender(cid: str) -> None:
                for n in range(1000):
                    try:
                        ack = await client.say(cid, f"{cid[:6]}-{n}", client_msg_id=f"{cid}-{n}")
                    except (httpx.HTTPError, AssertionError):
                        return  # the gateway died mid-request: that message was not acknowledged
                    acked.setdefault(cid, []).append(ack["message_id"])

            senders = [asyncio.create_task(sender(cid)) for cid in conversations]
            deadline = asyncio.get_running_loop().time() + 60
            while sum(len(v) for v in acked.values()) < 60:
                assert asyncio.get_running_loop().time() < deadline, (
                    "the gateway acknowledged too few messages"
                )
                assert not all(task.done() for task in senders), "every sender stopped early"
                await asyncio.sleep(0.01)
            gateway.kill()
            await asyncio.gather(*senders)
    finally:
        if gateway.proc and gateway.proc.poll() is None:
            gateway.kill()
    assert sum(len(v) for v in acked.values()) >= 60

    restarted = GatewayProcess(database, [key]).start()
    try:
        async with httpx.AsyncClient(
            verify=tls(), base_url=restarted.http_url, headers={"x-api-key": key}
        ) as http:
            for cid, message_ids in acked.items():
                transcript = (await http.get("/api/transcript", params={"conversation_id": cid})).json()[
                    "transcript"
                ]
                stored = [e["message_id"] for e in transcript if e["from"] == "user"]
                lost = set(message_ids) - set(stored)
                assert not lost, f"{len(lost)} acknowledged messages lost in {cid}"
                assert len(stored) == len(set(stored)), "duplicated messages"
                seqs = [e["seq"] for e in transcript]
                assert seqs == sorted(seqs)
                positions = [stored.index(m) for m in message_ids]
                assert positions == sorted(positions), "acknowledged messages out of order"
    finally:
        restarted.stop()


async def test_sigterm_closes_sockets_with_1001(tmp_path: Path) -> None:
    key = new_key()
    gateway = GatewayProcess(tmp_path / "term.db", [key]).start()
    try:
        async with websockets.connect(f"{gateway.ws_url}/dev?apiKey={key}") as ws:
            await ws.recv()
            assert gateway.proc is not None
            gateway.proc.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert gateway.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    finally:
        gateway.stop(signal.SIGKILL)


async def test_sigterm_lets_a_request_in_flight_finish_within_a_fractional_grace(tmp_path: Path) -> None:
    """``SHUTDOWN_GRACE_SECONDS`` is seconds, fractions included: a request that needs 0.3 s more after
    SIGTERM is answered within a 0.9 s grace (uvicorn was given ``int(0.9)``, 0 s, and cancelled it at once:
    503 "shutting down")."""
    key = new_key()
    database = tmp_path / "gw.db"
    env = {"CAPTIVATE_SHUTDOWN_GRACE_SECONDS": "0.9", "CAPTIVATE_SQLITE_BUSY_TIMEOUT": "10"}
    gateway = GatewayProcess(database, [key], env=env).start()
    assert gateway.proc is not None
    try:
        async with httpx.AsyncClient(
            verify=tls(), base_url=gateway.http_url, headers={"x-api-key": key}, timeout=10
        ) as http:
            first = await http.post(MESSAGE_PATH, json=envelope("conversation_start", {"userId": "a"}))
            assert first.status_code == 200, first.text
            holder = sqlite3.connect(database, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # the next write waits for this lock: a request in flight
            try:
                in_flight = asyncio.create_task(
                    http.post(MESSAGE_PATH, json=envelope("conversation_start", {"userId": "b"}))
                )
                await asyncio.sleep(0.3)  # on the keep-alive connection: at the gateway, waiting for the lock
                gateway.proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            answer = await in_flight
            assert answer.status_code == 200, answer.text
        await asyncio.to_thread(gateway.proc.wait, 10)  # it exits once that request was answered
    finally:
        gateway.stop()
    assert "timeout graceful shutdown exceeded" not in gateway.logs()
