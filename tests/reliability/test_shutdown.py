"""Graceful shutdown under load: SDK clients (both transports) and raw HTTP senders keep sending while the
gateway gets SIGTERM and is restarted on the same port and database. Every socket is closed with 1001,
every client reconnects and goes on, and every acknowledged message is stored exactly once. One more
client has stopped reading (its socket cannot be closed politely): the gateway still exits by itself, and
nobody reconnects to it while it is going away.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from captivate_chat_api import (
    CaptivateChatAPI,
    CaptivateChatError,
    ConnectionState,
    Conversation,
    ReconnectPolicy,
)
from harness.gateway import GatewayProcess, new_key
from harness.stalled import StalledSocket
from harness.wire import MESSAGE_PATH, WireClient, envelope, tls

ENV = {
    "CAPTIVATE_RATE_PER_SOCKET": "0",
    "CAPTIVATE_RATE_PER_KEY": "0",
    "CAPTIVATE_SHUTDOWN_GRACE_SECONDS": "1",
}
FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.3)
PATIENT = ReconnectPolicy(initial_delay=0.05, max_delay=0.5, max_attempts=200)  # ~60 s of resends at most
ACKS_PER_PHASE = 8
MAX_SENDS = 2000


@dataclass
class Sender:
    """One client's conversation and what the platform acknowledged to it."""

    name: str
    conversation_id: str = ""
    acked: list[str] = field(default_factory=list)
    client_msg_ids: list[str] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)
    reconnected: bool = False


async def until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def sdk_sender(conversation: Conversation, sender: Sender, stop: asyncio.Event) -> None:
    for n in range(MAX_SENDS):
        if stop.is_set():
            return
        msg_id = f"{sender.name}-{n}-{uuid.uuid4().hex[:6]}"
        try:
            sent = await conversation.send_message(f"{sender.name} {n}", client_msg_id=msg_id)
        except CaptivateChatError:
            continue  # not acknowledged: it may or may not be stored, both are allowed
        sender.acked.append(str(sent.message_id))
        sender.client_msg_ids.append(msg_id)


async def raw_sender(http_url: str, key: str, sender: Sender, stop: asyncio.Event) -> None:
    """As an npm 7.0.0 app with a retry loop: POSTs with a fixed client_msg_id until acknowledged."""
    async with httpx.AsyncClient(
        verify=tls(), base_url=http_url, headers={"x-api-key": key}, timeout=10
    ) as http:
        for n in range(MAX_SENDS):
            if stop.is_set():
                return
            msg_id = f"{sender.name}-{n}"
            body = envelope(
                "user_message",
                {
                    "conversation_id": sender.conversation_id,
                    "content": f"{sender.name} {n}",
                    "client_msg_id": msg_id,
                },
            )
            for _ in range(600):
                try:
                    response = await http.post(MESSAGE_PATH, json=body)
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
                    continue
                if response.status_code == 200:
                    sender.acked.append(response.json()["message_id"])
                    sender.client_msg_ids.append(msg_id)
                    break
                assert response.status_code >= 500, response.text  # only "try again" answers are retried
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"{msg_id} was never acknowledged")


async def read_until_closed(client: WireClient, sender: Sender) -> int | None:
    """Record the seqs of the sender's conversation until the socket closes; the close code."""
    try:
        for _ in range(1_000_000):
            payload = (await client.recv(120))["event"]["event_payload"]
            if payload.get("conversation_id") == sender.conversation_id and "seq" in payload:
                sender.seqs.append(payload["seq"])
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    raise AssertionError("the socket was never closed")


async def raw_socket(gateway: GatewayProcess, key: str, sender: Sender, restarted: asyncio.Event) -> None:
    """The raw client's WebSocket: read until the gateway closes it, then reconnect and resume by seq."""
    client = WireClient(gateway.http_url, gateway.ws_url, key)
    await client.connect()
    await client.ok("subscribe", {"conversation_id": sender.conversation_id, "after_seq": 0})
    sender.close_codes.append(await read_until_closed(client, sender))
    await client.close()
    await restarted.wait()
    client = WireClient(gateway.http_url, gateway.ws_url, key)  # the same port
    try:
        await client.connect()
        last = sender.seqs[-1] if sender.seqs else 0
        await client.ok("subscribe", {"conversation_id": sender.conversation_id, "after_seq": last})
        sender.reconnected = True
        await read_until_closed(client, sender)  # until the test is over
    finally:
        await client.close()


async def stall(gateway: GatewayProcess, key: str) -> StalledSocket:
    """A socket that stopped reading with megabytes due to it: its writer is blocked, not overflowing."""
    stalled = StalledSocket(gateway.ws_url, key)
    await stalled.open(gateway.port)
    async with httpx.AsyncClient(
        verify=tls(), base_url=gateway.http_url, headers={"x-api-key": key}, timeout=30
    ) as http:
        start = envelope("conversation_start", {"userId": "stalled"}, stalled.socket_id)
        cid = (await http.post(MESSAGE_PATH, json=start)).json()["conversation_id"]
        for n in range(40):
            say = envelope("user_message", {"conversation_id": cid, "content": f"{n} " + "x" * 100_000})
            assert (await http.post(MESSAGE_PATH, json=say)).status_code == 200
    return stalled


async def test_sigterm_under_load_loses_and_duplicates_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the websockets library logs each frame the SDK's sockets receive: the close codes are seen there
    caplog.set_level(logging.DEBUG, logger="captivate_chat_api.client.websocket")
    key, database = new_key(), tmp_path / "shutdown.db"
    gateway = GatewayProcess(database, [key], env=ENV).start()
    stop, restarted = asyncio.Event(), asyncio.Event()
    apis = [
        CaptivateChatAPI(
            key,
            base_url=gateway.http_url,
            transport=transport,
            reconnect=FAST,
            retry=PATIENT,
            request_timeout=30,
        )  # type: ignore[arg-type]
        for transport in ("http", "http", "websocket", "websocket")
    ]
    sdk = [Sender(f"sdk-{api.transport}-{n}") for n, api in enumerate(apis)]
    raw = [Sender(f"raw-{n}") for n in range(2)]
    tasks: list[asyncio.Task[None]] = []
    stalled: StalledSocket | None = None
    sockets: list[asyncio.Task[None]] = []
    try:
        # the stalled socket first: its 4 MB of posts, made while the senders ran, let them pile up ~750
        # acknowledged messages before the SIGTERM instead of the ACKS_PER_PHASE it needs (~3 CPU-s)
        stalled = await stall(gateway, key)
        for api, sender in zip(apis, sdk, strict=True):
            await api.connect()
            conversation = await api.create_conversation(sender.name, mode="user-first")
            conversation.on_event(lambda event, s=sender: event.seq is None or s.seqs.append(event.seq))
            sender.conversation_id = conversation.conversation_id
            tasks.append(asyncio.create_task(sdk_sender(conversation, sender, stop)))
        async with httpx.AsyncClient(
            verify=tls(), base_url=gateway.http_url, headers={"x-api-key": key}
        ) as http:
            for sender in raw:
                start = await http.post(
                    MESSAGE_PATH, json=envelope("conversation_start", {"userId": sender.name})
                )
                sender.conversation_id = start.json()["conversation_id"]
        for sender in raw:
            sockets.append(asyncio.create_task(raw_socket(gateway, key, sender, restarted)))
            tasks.append(asyncio.create_task(raw_sender(gateway.http_url, key, sender, stop)))
        everyone = sdk + raw
        await until(lambda: all(len(s.acked) >= ACKS_PER_PHASE for s in everyone), "acks before SIGTERM")
        sockets_before = [api.socket_id for api in apis]

        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGTERM)  # mid-send: nobody pauses
        assert await asyncio.to_thread(gateway.stop) in (0, -signal.SIGTERM), "it did not exit by itself"
        at_restart = [len(s.acked) for s in everyone]
        gateway = await asyncio.to_thread(GatewayProcess(database, [key], env=ENV, port=gateway.port).start)
        restarted.set()

        await until(lambda: all(api.state is ConnectionState.CONNECTED for api in apis), "SDK reconnects")
        await until(
            lambda: all(
                len(s.acked) >= n + ACKS_PER_PHASE for s, n in zip(everyone, at_restart, strict=True)
            ),
            "acks after the restart",
        )
        await until(lambda: all(s.reconnected for s in raw), "raw sockets reconnect")
        stop.set()
        await asyncio.gather(*tasks)

        async with httpx.AsyncClient(
            verify=tls(), base_url=gateway.http_url, headers={"x-api-key": key}
        ) as http:
            transcripts = {}
            for sender in everyone:
                got = await http.get("/api/transcript", params={"conversation_id": sender.conversation_id})
                transcripts[sender.name] = got.json()["transcript"]
            # the SDK clients receive every event once, in order: wait for the last one, then compare
            await until(
                lambda: all(s.seqs and s.seqs[-1] >= transcripts[s.name][-1]["seq"] for s in sdk),
                "the SDK's last events",
            )
    finally:
        stop.set()
        if stalled is not None:
            stalled.abort()
        for api in apis:
            await api.close()
        for task in sockets:
            task.cancel()
        await asyncio.gather(*tasks, *sockets, return_exceptions=True)
        gateway.stop()

    assert all(api.socket_id != old for api, old in zip(apis, sockets_before, strict=True)), "new sockets"
    # the close frames the SDK's sockets received: 1001 from the SIGTERM, 1000 answering the final close()
    closes = [r.getMessage().split()[2] for r in caplog.records if r.getMessage().startswith("< CLOSE")]
    assert closes.count("1001") >= len(apis) and set(closes) <= {"1000", "1001"}, closes
    assert [s.close_codes for s in raw] == [[1001]] * len(raw)
    for sender in everyone:
        users = [e for e in transcripts[sender.name] if e["from"] == "user"]
        stored = [e["message_id"] for e in users]
        lost = set(sender.acked) - set(stored)
        assert not lost, f"{sender.name}: {len(lost)} acknowledged messages lost"
        assert len(stored) == len(set(stored)), f"{sender.name}: a message stored twice"
        client_ids = [e.get("client_msg_id") for e in users]
        assert len(client_ids) == len(set(client_ids)), f"{sender.name}: a client_msg_id stored twice"
        by_id = {e["message_id"]: (n, e.get("client_msg_id")) for n, e in enumerate(users)}
        acked = [by_id[m] for m in sender.acked]
        assert [c for _, c in acked] == sender.client_msg_ids, f"{sender.name}: an ack names another message"
        assert [n for n, _ in acked] == sorted(n for n, _ in acked), f"{sender.name}: stored out of order"
    for sender in everyone:  # raw sockets resumed by seq; the SDK by itself
        assert sender.seqs == list(range(1, len(sender.seqs) + 1)), f"{sender.name}: events lost or repeated"
    print(
        f"\nshutdown: acknowledged {sum(len(s.acked) for s in everyone)} messages, {sum(at_restart)} before SIGTERM"
    )
