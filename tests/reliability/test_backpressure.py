"""Slow consumers: a socket that stops reading is closed with 1013 once its send queue overflows, the
gateway's memory stays bounded while it is stuck, a healthy socket keeps receiving everything in order
meanwhile, and the slow client catches up by ``subscribe`` exactly once.

CI size: 120 messages of 100 KB to the stuck conversation (~24 MB of frames, ~19 MB of them the stuck socket
never takes: still ~4x what its 50-frame queue and its TCP buffers can hold, while the gateway's RSS grows
by ~1 MB; 240 messages proved the same for ~3 CPU-s more).
Larger: ``CAPTIVATE_STRESS_SCALE=5 .venv/bin/pytest tests/reliability/test_backpressure.py -s``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness.gateway import GatewayProcess, new_key
from harness.stalled import StalledSocket
from harness.wire import WireClient

SCALE = max(1, int(os.environ.get("CAPTIVATE_STRESS_SCALE", "1")))
QUEUE_FRAMES = 50
TEXT_BYTES = 100_000  # the echo and the demo agent's "You said: ..." stay under the 128 KB frame limit
STUCK_MESSAGES = 120 * SCALE
OTHER_MESSAGES = 20 * SCALE


@pytest.fixture(scope="module")
def key() -> str:
    return new_key()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, key: str) -> Iterator[GatewayProcess]:
    env = {
        "CAPTIVATE_SEND_QUEUE_FRAMES": str(QUEUE_FRAMES),
        "CAPTIVATE_RATE_PER_SOCKET": "0",
        "CAPTIVATE_RATE_PER_KEY": "0",
    }
    process = GatewayProcess(tmp_path_factory.mktemp("backpressure") / "gw.db", [key], env=env).start()
    yield process
    process.stop()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def seqs_of(frames: list[dict[str, Any]], conversation_id: str) -> list[int]:
    return [
        f["event"]["event_payload"]["seq"]
        for f in frames
        if f["event"]["event_payload"].get("conversation_id") == conversation_id
        and "seq" in f["event"]["event_payload"]
    ]


async def test_a_stuck_socket_is_dropped_with_1013_and_nothing_else_suffers(
    gateway: GatewayProcess, key: str
) -> None:
    assert gateway.proc is not None
    text = "x" * TEXT_BYTES
    async with WireClient(gateway.http_url, gateway.ws_url, key) as healthy:
        stuck_cid, other_cid = (
            await healthy.start(f"bp-{uuid.uuid4().hex[:6]}"),
            await healthy.start("bp-other"),
        )
        received: dict[str, list[int]] = {stuck_cid: [], other_cid: []}

        async def keep_reading(until: int) -> None:
            for _ in range(100 * until):
                if sum(map(len, received.values())) >= until:
                    return
                payload = (await healthy.recv(30))["event"]["event_payload"]
                if payload.get("conversation_id") in received and "seq" in payload:
                    received[payload["conversation_id"]].append(payload["seq"])
                healthy.frames.clear()

        async def send(count_stuck: int, count_other: int) -> None:
            """Messages to both conversations, keeping the healthy reader at most ~15 events behind (well under
            the queue of QUEUE_FRAMES, also when a loaded machine delays the reader)."""
            targets = [
                cid
                for _, cid in sorted(  # both conversations, interleaved evenly
                    [(n / count_stuck, stuck_cid) for n in range(count_stuck)]
                    + [(n / count_other, other_cid) for n in range(count_other)]
                )
            ]
            goal = sum(map(len, received.values()))
            reader = asyncio.create_task(keep_reading(goal + 2 * len(targets)))
            for n, cid in enumerate(targets):
                for _ in range(2000):
                    if sum(map(len, received.values())) >= goal + 2 * n - 15 or reader.done():
                        break
                    await asyncio.sleep(0.005)
                await healthy.say(cid, f"{n} {text}")
            await reader

        await send(10, 10)  # warm-up: the allocator grows to its working size before the baseline
        stalled = StalledSocket(gateway.ws_url, key)
        await stalled.open(gateway.port)
        bound = await healthy.http.post(
            "/api/custom-channel/sockets/message",
            json={
                "event": {
                    "event_type": "subscribe",
                    "event_payload": {"conversation_id": stuck_cid, "after_seq": 20},
                    "socket_id": stalled.socket_id,
                }
            },
        )
        assert bound.status_code == 200, bound.text
        baseline = rss_kib(gateway.proc.pid)

        await send(STUCK_MESSAGES, OTHER_MESSAGES)  # the stalled socket reads nothing meanwhile
        stuck_rss = rss_kib(gateway.proc.pid)
        last_seq = 20 + 2 * STUCK_MESSAGES
        # the healthy socket got every event of both conversations, in order, while the other was stuck
        assert received[stuck_cid] == list(range(1, last_seq + 1))
        assert received[other_cid] == list(range(1, 20 + 2 * OTHER_MESSAGES + 1))

        close_code = await stalled.read_to_the_end()
        got = seqs_of(stalled.frames, stuck_cid)
        assert close_code == 1013, f"closed with {close_code} after {len(got)} events"
        assert "send queue full (slow consumer)" in gateway.logs()  # decided while it was stuck
        assert got == list(range(21, 21 + len(got))), "what did arrive arrived in order, without gaps"
        assert len(got) < 2 * STUCK_MESSAGES, "the stalled socket cannot have received everything"

    would_be_queued = (2 * STUCK_MESSAGES - len(got)) * TEXT_BYTES // 1024
    growth = stuck_rss - baseline
    print(
        f"\nbackpressure: RSS {baseline} -> {stuck_rss} KiB (+{growth}); frames it never took: {would_be_queued} KiB"
    )
    assert growth < would_be_queued // 2, (
        f"RSS grew {growth} KiB while {would_be_queued} KiB of frames were due"
    )

    async with WireClient(gateway.http_url, gateway.ws_url, key) as back:
        request_id = uuid.uuid4().hex
        after = 20 + len(got)
        await back.send_ws(
            "subscribe", {"conversation_id": stuck_cid, "after_seq": after}, request_id=request_id
        )
        replayed: list[int] = []
        for _ in range(10 * last_seq):
            frame = await back.recv(30)
            if frame.get("request_id") == request_id:
                reply = frame["event"]["event_payload"]
                break
            replayed += seqs_of([frame], stuck_cid)
        else:
            raise AssertionError("no reply to subscribe")
    assert reply.get("recovered") is True and reply["last_seq"] == last_seq, reply
    assert got + replayed == list(range(21, last_seq + 1)), "every event exactly once, in order"
