"""Crash harness: SIGKILL the gateway under load and prove that no acknowledged message is lost,
duplicated or reordered.

Modes (one command each, from the repository root):

    .venv/bin/python tools/crash_harness.py --cycles 5 --conversations 20 --senders 4 --seconds-per-cycle 3
    .venv/bin/python tools/crash_harness.py --mode lost-acks --messages 300 --loss 0.1

``crash``: ``--senders`` tasks per conversation each send numbered messages one after another (text
``c07-s2-000123``, a ``client_msg_id`` unique per message) by HTTP POST with ``x-api-key`` as the npm client
does (or as WebSocket frames with ``--transport websocket``). The gateway (``captivate-chat serve`` on one
loopback port, one SQLite file, rate limits off) is SIGKILLed at a random moment of each cycle and
restarted (with ``--acks-per-cycle N``, sooner: once the running gateway acknowledged a random N/2 to N
messages and a request is in flight, as the test suite runs it). A message whose acknowledgement was lost is resent with the same ``client_msg_id`` and content
until acknowledged or the run ends. After the last cycle the senders stop starting new messages, finish
their retries, and the gateway is SIGKILLed and restarted once more before every transcript is read.

``lost-acks``: the Python SDK sends through ``tests/harness/faultproxy.py``, which drops ``--loss`` of the HTTP
responses after the gateway did the work; the SDK's retries must store each message exactly once.

Both count: acknowledged but lost, duplicated (a message stored twice), reordered (one sender's
acknowledged messages stored out of send order), acknowledgements that disagree with the store
(``message_id``/``seq``), and unacknowledged but stored (fine). The exit status is 1 unless the first four
are 0 and no request was refused.

Durability levels (``--synchronous``, the gateway's ``CAPTIVATE_SQLITE_SYNCHRONOUS``): the default NORMAL
(WAL) keeps every acknowledged message through a crash of the process (SIGKILL, OOM): a commit is in the
OS before the acknowledgement leaves. It does not survive an OS crash or power loss; FULL does, at one
fsync per commit. SIGKILL tests the first promise only: an OS crash is not simulated here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test helpers: a gateway subprocess, the fault proxy

from captivate_chat_api import CaptivateChatAPI, ReconnectPolicy
from captivate_chat_api.errors import CaptivateChatError
from harness.faultproxy import FaultProxy
from harness.gateway import GatewayProcess, new_key
from harness.wire import tls

MESSAGE_PATH = "/api/custom-channel/sockets/message"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TEXT = re.compile(r"^c(\d+)-s(\d+)-(\d{6})$")
REQUEST_TIMEOUT = 10.0


@dataclass
class Options:
    mode: str = "crash"
    cycles: int = 5
    conversations: int = 20
    senders: int = 4
    seconds_per_cycle: float = 3.0
    synchronous: str = "NORMAL"
    transport: str = "http"
    messages: int = 300
    loss: float = 0.1
    drain_seconds: float = 20.0
    seed: int | None = None
    acks_per_cycle: int = 0
    """When > 0, each cycle's kill comes once the running gateway acknowledged a random 1/2 to 1 times this
    many messages (with requests in flight), or at the cycle's seconds if that comes first."""


@dataclass(frozen=True, slots=True)
class Ack:
    message_id: str
    seq: int
    latency: float
    attempts: int
    incarnation: int
    """Which gateway process acknowledged it (0: the first start)."""
    duplicate: bool


@dataclass
class Ledger:
    """What the load generator sent and what the gateway acknowledged, keyed by message text."""

    conversations: dict[int, str] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    acks: dict[str, Ack] = field(default_factory=dict)
    attempts: int = 0
    in_flight: int = 0
    incarnation: int = 0
    errors: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    """Failed attempts by cause (an exception name or an HTTP status)."""
    deadline: float = float("inf")
    """Monotonic time after which senders give up on an unacknowledged message."""
    acked_now: int = 0
    """Acknowledgements by the running gateway process (``incarnation``), from attempts made to it."""

    def record(self, text: str, body: dict[str, Any], first: float, attempts: int, incarnation: int) -> None:
        message_id, seq = body.get("message_id"), body.get("seq")
        if not isinstance(message_id, str) or not isinstance(seq, int):
            self.errors.append(f"{text}: an acknowledgement without message_id and seq: {str(body)[:200]}")
            return
        duplicate = bool(body.get("duplicate", False))
        self.acks[text] = Ack(message_id, seq, time.monotonic() - first, attempts, incarnation, duplicate)
        self.acked_now += incarnation == self.incarnation


@dataclass
class Counts:
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    mismatched: int = 0
    unacked: int = 0
    unacked_stored: int = 0
    unexpected: int = 0
    """Entries the load generator did not send, and transcripts not in strictly increasing ``seq``."""
    examples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.lost == self.duplicated == self.reordered == self.mismatched == self.unexpected == 0


def message_text(conversation: int, sender: int, number: int) -> str:
    return f"c{conversation:02d}-s{sender}-{number:06d}"


def count(ledger: Ledger, transcripts: dict[str, list[dict[str, Any]]]) -> Counts:
    """Compare the acknowledgements with the stored transcripts (every conversation of the ledger)."""
    counts = Counts()
    stored: dict[str, list[dict[str, Any]]] = defaultdict(list)
    cid_of = {cid: index for index, cid in ledger.conversations.items()}
    for cid, transcript in transcripts.items():
        seqs = [entry.get("seq") for entry in transcript]
        if any(not isinstance(b, int) or not isinstance(a, int) or b <= a for a, b in pairwise(seqs)):
            counts.unexpected += 1
            counts.examples.append(f"transcript of {cid} is not in strictly increasing seq order")
        for entry in transcript:
            if entry.get("from") != "user":
                continue
            content = entry.get("content")
            text = content.get("text") if isinstance(content, dict) else None
            match = TEXT.match(text) if isinstance(text, str) else None
            if match is None or int(match.group(1)) != cid_of.get(cid):
                counts.unexpected += 1
                counts.examples.append(f"unexpected entry in {cid}: {str(entry)[:120]}")
                continue
            stored[text].append(entry)
    counts.stored = sum(len(v) for v in stored.values())
    for text, copies in stored.items():
        if len(copies) > 1:
            counts.duplicated += len(copies) - 1
            counts.examples.append(f"{text} stored {len(copies)} times")
    by_sender: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for text in ledger.sent:
        ack, copies = ledger.acks.get(text), stored.get(text, [])
        if ack is None:
            counts.unacked += 1
            counts.unacked_stored += bool(copies)
            continue
        if not copies:
            counts.lost += 1
            counts.examples.append(f"{text} acknowledged as seq {ack.seq}, not stored")
            continue
        first = copies[0]
        if (first.get("message_id"), first.get("seq")) != (ack.message_id, ack.seq):
            counts.mismatched += 1
            counts.examples.append(
                f"{text} acknowledged as {ack.message_id}/{ack.seq}, stored as "
                f"{first.get('message_id')}/{first.get('seq')}"
            )
        conversation, sender, number = TEXT.match(text).groups()  # type: ignore[union-attr]
        by_sender[(conversation, sender)].append((int(first["seq"]), int(number)))
    for sender_key, pairs in by_sender.items():
        numbers = [number for _, number in sorted(pairs)]
        out_of_order = sum(1 for a, b in pairwise(numbers) if b < a)
        counts.reordered += out_of_order
        if out_of_order:
            counts.examples.append(f"c{sender_key[0]}-s{sender_key[1]}: stored order {numbers[:20]}…")
    return counts


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def gateway_env(synchronous: str) -> dict[str, str]:
    return {
        "CAPTIVATE_RATE_PER_SOCKET": "0",
        "CAPTIVATE_RATE_PER_KEY": "0",
        "CAPTIVATE_STARTS_PER_MINUTE_PER_KEY": "0",
        "CAPTIVATE_SQLITE_SYNCHRONOUS": synchronous,
        "CAPTIVATE_ACCESS_LOG": "false",
    }


def user_message(cid: str, text: str, client_msg_id: str) -> dict[str, Any]:
    payload = {
        "conversation_id": cid,
        "type": "message_create",
        "client_msg_id": client_msg_id,
        "content": {"type": "text", "text": text},
    }
    return {"action": "sendMessage", "event": {"event_type": "user_message", "event_payload": payload}}


async def backoff(delay: float, rng: random.Random) -> float:
    await asyncio.sleep(rng.uniform(delay / 2, delay))
    return min(1.0, delay * 2)


# senders ------------------------------------------------------------------------------------------


async def http_sender(
    http: httpx.AsyncClient,
    run: str,
    ledger: Ledger,
    conv: int,
    sender: int,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    """Send numbered messages one after another; resend each (same id and content) until acknowledged."""
    cid, number = ledger.conversations[conv], 0
    while not stop.is_set():
        number += 1
        text = message_text(conv, sender, number)
        body = user_message(cid, text, f"{run}-{text}")
        ledger.sent.append(text)
        first, attempts, delay = time.monotonic(), 0, 0.05
        while time.monotonic() < ledger.deadline:
            attempts += 1
            ledger.attempts += 1
            ledger.in_flight += 1
            incarnation = ledger.incarnation
            try:
                response = await http.post(MESSAGE_PATH, json=body)
            except httpx.TransportError as exc:
                response = None
                ledger.failures[type(exc).__name__] += 1
            finally:
                ledger.in_flight -= 1
            if response is not None and response.is_success:
                try:
                    ledger.record(text, response.json(), first, attempts, incarnation)
                except ValueError:
                    ledger.errors.append(f"{text}: a 2xx answer that is not JSON: {response.text[:200]}")
                break
            if response is not None:
                ledger.failures[f"HTTP {response.status_code}"] += 1
                if response.status_code not in RETRY_STATUSES:
                    ledger.errors.append(f"{text}: HTTP {response.status_code} {response.text[:200]}")
                    return
            delay = await backoff(delay, rng)
        else:
            return  # the run ended with this message unacknowledged


class Refused(Exception):
    """The gateway refused a message for good (an error other than 429 or 5xx)."""


async def ws_ack(ws: Any, client_msg_id: str) -> dict[str, Any]:
    """The ``user_message`` echo carrying ``client_msg_id`` (other frames are skipped)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), REQUEST_TIMEOUT))
        event = frame.get("event", {})
        payload = event.get("event_payload", {})
        if event.get("event_type") == "user_message" and payload.get("client_msg_id") == client_msg_id:
            return dict(payload)
        if event.get("event_type") == "general_error" and payload.get("error_code") not in RETRY_STATUSES:
            raise Refused(f"general_error {payload}")


async def ws_sender(
    ws_url: str,
    key: str,
    run: str,
    ledger: Ledger,
    conv: int,
    sender: int,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    """As :func:`http_sender`, with each message a WebSocket frame acknowledged by its echo."""
    cid, number, ws = ledger.conversations[conv], 0, None
    try:
        while not stop.is_set():
            number += 1
            text = message_text(conv, sender, number)
            client_msg_id = f"{run}-{text}"
            frame = json.dumps(user_message(cid, text, client_msg_id))
            ledger.sent.append(text)
            first, attempts, delay = time.monotonic(), 0, 0.05
            while time.monotonic() < ledger.deadline:
                attempts += 1
                ledger.attempts += 1
                ledger.in_flight += 1
                incarnation, ack = ledger.incarnation, None
                try:
                    if ws is None:
                        ws = await websockets.connect(
                            f"{ws_url}/dev?apiKey={key}",
                            open_timeout=5,
                            close_timeout=1,
                            ping_interval=None,
                            max_size=None,
                        )
                        await asyncio.wait_for(ws.recv(), 5)  # socket_connected
                    await ws.send(frame)
                    ack = await ws_ack(ws, client_msg_id)
                except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                    ledger.failures[type(exc).__name__] += 1
                    if ws is not None:
                        await ws.close()
                    ws = None
                except Refused as exc:
                    ledger.errors.append(f"{text}: {exc}")
                    return
                finally:
                    ledger.in_flight -= 1
                if ack is not None:
                    ledger.record(text, ack, first, attempts, incarnation)
                    break
                delay = await backoff(delay, rng)
            else:
                return
    finally:
        if ws is not None:
            await ws.close()


# the runs -----------------------------------------------------------------------------------------


async def start_gateway(database: Path, key: str, env: dict[str, str], port: int = 0) -> GatewayProcess:
    process = GatewayProcess(database, [key], env=env, port=port)
    try:
        return await asyncio.to_thread(process.start)
    except BaseException:
        if process.proc is not None:  # started but never ready: leave no stray gateway behind
            await asyncio.to_thread(process.kill)
        raise


async def read_transcripts(
    http_url: str, key: str, conversations: list[str]
) -> dict[str, list[dict[str, Any]]]:
    async with httpx.AsyncClient(
        verify=tls(), base_url=http_url, headers={"x-api-key": key}, timeout=30
    ) as http:
        out = {}
        for cid in conversations:
            response = await http.get("/api/transcript", params={"conversation_id": cid})
            response.raise_for_status()
            out[cid] = response.json()["transcript"]
        return out


async def start_conversations(http: httpx.AsyncClient, count_: int) -> dict[int, str]:
    out = {}
    for index in range(count_):
        body = {
            "action": "sendMessage",
            "event": {"event_type": "conversation_start", "event_payload": {"userId": f"crash-{index:02d}"}},
        }
        response = await http.post(MESSAGE_PATH, json=body)
        response.raise_for_status()
        out[index] = response.json()["conversation_id"]
    return out


async def until_kill(ledger: Ledger, options: Options, rng: random.Random) -> None:
    """Wait for a cycle's kill moment: a random 0.3 to 1.0 of ``seconds_per_cycle`` after the gateway is up,
    or sooner with ``acks_per_cycle``: once the gateway acknowledged a random share of that many messages and
    a request is in flight (a load that is stopped by what it did, not by the clock)."""
    deadline = time.monotonic() + rng.uniform(0.3, 1.0) * options.seconds_per_cycle
    if options.acks_per_cycle <= 0:
        await asyncio.sleep(deadline - time.monotonic())
        return
    target = rng.randint((options.acks_per_cycle + 1) // 2, options.acks_per_cycle)
    while time.monotonic() < deadline and (ledger.acked_now < target or ledger.in_flight == 0):
        await asyncio.sleep(0.005)


async def run_crash(options: Options) -> dict[str, Any]:
    """Kill and restart the gateway ``options.cycles`` times under load; returns the report (a dict)."""
    rng = random.Random(options.seed)
    key, run = new_key(), secrets.token_hex(4)
    env = gateway_env(options.synchronous)
    started = time.monotonic()
    ledger, kills, in_flight_at_kills = Ledger(), 0, 0
    restarts: list[float] = []
    with tempfile.TemporaryDirectory(prefix="crash-harness-") as tmp:
        database = Path(tmp) / "gateway.db"
        gateway = await start_gateway(database, key, env)
        port = gateway.port
        try:
            limits = httpx.Limits(max_connections=options.conversations * options.senders + 4)
            async with httpx.AsyncClient(
                verify=tls(),
                base_url=gateway.http_url,
                headers={"x-api-key": key},
                timeout=REQUEST_TIMEOUT,
                limits=limits,
            ) as http:
                ledger.conversations = await start_conversations(http, options.conversations)
                stop = asyncio.Event()
                senders = []
                for conv in ledger.conversations:
                    for sender in range(options.senders):
                        sender_rng = random.Random(rng.random())
                        if options.transport == "websocket":
                            job = ws_sender(gateway.ws_url, key, run, ledger, conv, sender, stop, sender_rng)
                        else:
                            job = http_sender(http, run, ledger, conv, sender, stop, sender_rng)
                        senders.append(asyncio.create_task(job))
                try:
                    for _ in range(options.cycles):
                        await until_kill(ledger, options, rng)
                        in_flight_at_kills += ledger.in_flight
                        ledger.incarnation += 1  # any attempt from now on reaches the next process
                        ledger.acked_now = 0
                        await asyncio.to_thread(gateway.kill)
                        kills += 1
                        down = time.monotonic()
                        gateway = await start_gateway(database, key, env, port)
                        restarts.append(time.monotonic() - down)
                    stop.set()
                    ledger.deadline = time.monotonic() + options.drain_seconds
                    await asyncio.wait(senders, timeout=options.drain_seconds + REQUEST_TIMEOUT + 5)
                finally:
                    for task in senders:
                        task.cancel()
                    for outcome in await asyncio.gather(*senders, return_exceptions=True):
                        if isinstance(
                            outcome, Exception
                        ):  # a bug in a sender must not pass as "unacknowledged"
                            ledger.errors.append(f"a sender failed: {outcome!r}")
            # every acknowledgement, those of the drain included, must survive one more SIGKILL
            await asyncio.to_thread(gateway.kill)
            gateway = await start_gateway(database, key, env, port)
            transcripts = await read_transcripts(gateway.http_url, key, list(ledger.conversations.values()))
        finally:
            await asyncio.to_thread(gateway.stop)
    counts = count(ledger, transcripts)
    result = report(options, ledger, counts, started, kills=kills, in_flight_at_kills=in_flight_at_kills)
    result["restart_s"] = {"mean": round(sum(restarts) / len(restarts), 2), "max": round(max(restarts), 2)}
    return result


async def run_lost_acks(options: Options) -> dict[str, Any]:
    """Send ``options.messages`` through the fault proxy losing ``options.loss`` of the HTTP responses."""
    rng = random.Random(options.seed)
    key = new_key()
    started = time.monotonic()
    ledger = Ledger()
    policy = ReconnectPolicy(initial_delay=0.02, max_delay=0.2, max_attempts=12)
    with tempfile.TemporaryDirectory(prefix="lost-acks-") as tmp:
        gateway = await start_gateway(Path(tmp) / "gateway.db", key, gateway_env(options.synchronous))
        try:
            async with (
                FaultProxy("127.0.0.1", gateway.port) as proxy,
                CaptivateChatAPI(
                    key, base_url=proxy.url, retry=policy, request_timeout=REQUEST_TIMEOUT
                ) as api,
            ):
                conversations = [
                    await api.create_conversation(f"lost-acks-{i:02d}", mode="user-first")
                    for i in range(options.conversations)
                ]
                ledger.conversations = {i: c.conversation_id for i, c in enumerate(conversations)}
                proxy.rng = random.Random(rng.random())
                proxy.loss_rate = options.loss

                async def sender(conv: int) -> None:
                    share = range(conv, options.messages, options.conversations)
                    for number in range(1, len(share) + 1):
                        text = message_text(conv, 0, number)
                        ledger.sent.append(text)
                        first = time.monotonic()
                        try:
                            sent = await conversations[conv].send_message(text)
                        except CaptivateChatError as exc:
                            ledger.errors.append(f"{text}: {type(exc).__name__}: {exc}")
                            return
                        body = {"message_id": sent.message_id, "seq": sent.seq, "duplicate": sent.duplicate}
                        # the SDK retries inside send_message: an answer marked duplicate means >= 2 attempts
                        ledger.record(text, body, first, 1 + sent.duplicate, 0)

                await asyncio.gather(*(sender(i) for i in range(options.conversations)))
                proxy.loss_rate = 0.0
                acks_lost = proxy.lost
                ledger.attempts = len(ledger.sent) + acks_lost  # each lost response costs one more attempt
            transcripts = await read_transcripts(gateway.http_url, key, list(ledger.conversations.values()))
        finally:
            await asyncio.to_thread(gateway.stop)
    counts = count(ledger, transcripts)
    result = report(options, ledger, counts, started, kills=0, in_flight_at_kills=0)
    result["acks_lost"] = acks_lost
    return result


def report(
    options: Options, ledger: Ledger, counts: Counts, started: float, *, kills: int, in_flight_at_kills: int
) -> dict[str, Any]:
    latencies = [ack.latency * 1000 for ack in ledger.acks.values()]
    clean = [ack.latency * 1000 for ack in ledger.acks.values() if ack.attempts == 1]
    websocket = options.mode == "crash" and options.transport == "websocket"
    return {
        "options": asdict(options),
        "duration_s": round(time.monotonic() - started, 1),
        "kills": kills,
        "in_flight_at_kills": in_flight_at_kills,
        "sent": len(ledger.sent),
        "acked": len(ledger.acks),
        "acked_after_restart": sum(1 for ack in ledger.acks.values() if ack.incarnation > 0),
        "attempts": ledger.attempts,
        "retried": sum(1 for ack in ledger.acks.values() if ack.attempts > 1),
        # a WebSocket echo does not say whether it repeats an earlier acknowledgement
        "duplicate_acks": None if websocket else sum(1 for ack in ledger.acks.values() if ack.duplicate),
        "unacked": counts.unacked,
        "unacked_stored": counts.unacked_stored,
        "stored": counts.stored,
        "lost": counts.lost,
        "duplicated": counts.duplicated,
        "reordered": counts.reordered,
        "mismatched": counts.mismatched,
        "unexpected": counts.unexpected,
        "errors": len(ledger.errors),
        "failed_attempts": dict(ledger.failures.most_common()),
        "examples": (counts.examples + ledger.errors)[:10],
        "latency_ms": {
            "p50": round(percentile(latencies, 0.5), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies, default=0.0), 1),
            "first_attempt_p50": round(percentile(clean, 0.5), 1),
        },
        "passed": counts.passed and not ledger.errors,
    }


def render(result: dict[str, Any]) -> str:
    o, lat = result["options"], result["latency_ms"]
    if o["mode"] == "crash":
        head = (
            f"crash harness: {result['kills']} SIGKILLs in {o['cycles']} cycles of ~{o['seconds_per_cycle']:g} s, "
            f"{o['conversations']} conversations x {o['senders']} senders, transport {o['transport']}, "
            f"SQLite synchronous {o['synchronous']}"
        )
        extra = [
            ("requests in flight at the kills", result["in_flight_at_kills"]),
            ("gateway restart mean / max", f"{result['restart_s']['mean']} / {result['restart_s']['max']} s"),
            ("acked by a restarted gateway", result["acked_after_restart"]),
        ]
    else:
        head = (
            f"lost acknowledgements: {o['messages']} messages over {o['conversations']} conversations, "
            f"{o['loss']:.0%} of HTTP responses dropped by the fault proxy, Python SDK retries"
        )
        extra = [("responses dropped by the proxy", result["acks_lost"])]
    rows = [
        ("messages sent", result["sent"]),
        ("acknowledged", result["acked"]),
        *extra,
        ("send attempts", result["attempts"]),
        (
            "failed attempts by cause",
            ", ".join(f"{k} {v}" for k, v in result["failed_attempts"].items()) or "-",
        ),
        ("retried (an ack was lost)", result["retried"]),
        ("answered as duplicates", "n/a" if result["duplicate_acks"] is None else result["duplicate_acks"]),
        ("unacknowledged at the end (stored)", f"{result['unacked']} ({result['unacked_stored']})"),
        ("acknowledged but LOST", result["lost"]),
        ("DUPLICATED", result["duplicated"]),
        ("REORDERED", result["reordered"]),
        ("ack disagrees with store", result["mismatched"]),
        ("unexpected entries / refused", f"{result['unexpected']} / {result['errors']}"),
        ("ack latency p50 / p99 / max", f"{lat['p50']} / {lat['p99']} / {lat['max']} ms"),
        ("ack latency p50, acked at first try", f"{lat['first_attempt_p50']} ms"),
        ("duration", f"{result['duration_s']} s"),
    ]
    lines = [head, *(f"  {name:<36} {value}" for name, value in rows)]
    lines += [f"  ! {example}" for example in result["examples"]]
    lines.append("RESULT: " + ("PASS" if result["passed"] else "FAIL"))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mode", choices=("crash", "lost-acks"), default="crash")
    parser.add_argument("--cycles", type=int, default=5, help="SIGKILLs under load (crash mode)")
    parser.add_argument("--conversations", type=int, default=None, help="default: 20 (crash), 4 (lost-acks)")
    parser.add_argument(
        "--senders", type=int, default=4, help="concurrent senders per conversation (crash mode)"
    )
    parser.add_argument(
        "--seconds-per-cycle",
        type=float,
        default=3.0,
        help="each kill comes 0.3 to 1.0 times this after the gateway is up",
    )
    parser.add_argument(
        "--synchronous",
        type=str.upper,
        choices=("NORMAL", "FULL"),
        default="NORMAL",
        help="the gateway's CAPTIVATE_SQLITE_SYNCHRONOUS",
    )
    parser.add_argument("--transport", choices=("http", "websocket"), default="http", help="crash mode")
    parser.add_argument("--messages", type=int, default=300, help="lost-acks mode")
    parser.add_argument(
        "--loss", type=float, default=0.1, help="fraction of HTTP responses lost (lost-acks mode)"
    )
    parser.add_argument("--drain-seconds", type=float, default=20.0, help="time to finish retries at the end")
    parser.add_argument(
        "--acks-per-cycle",
        type=int,
        default=0,
        help="kill once the gateway acknowledged 1/2 to 1 times this many messages (or at the cycle's time)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seeds the kill moments and the losses")
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write the report as JSON"
    )
    args = parser.parse_args(argv)
    if (
        min(args.cycles, args.senders, args.messages) < 1
        or min(args.seconds_per_cycle, args.drain_seconds) <= 0
    ):
        parser.error(
            "--cycles, --senders, --messages, --seconds-per-cycle and --drain-seconds must be positive"
        )
    if not 0 <= args.loss < 1:
        parser.error("--loss must be in [0, 1)")
    conversations = (
        args.conversations if args.conversations is not None else (20 if args.mode == "crash" else 4)
    )
    if conversations < 1:
        parser.error("--conversations must be positive")
    options = Options(
        args.mode,
        args.cycles,
        conversations,
        args.senders,
        args.seconds_per_cycle,
        args.synchronous,
        args.transport,
        args.messages,
        args.loss,
        args.drain_seconds,
        args.seed,
        max(0, args.acks_per_cycle),
    )
    return options, args.json


async def run(options: Options) -> dict[str, Any]:
    return await (run_crash(options) if options.mode == "crash" else run_lost_acks(options))


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)  # never a half-written report


def main(argv: list[str] | None = None) -> int:
    options, json_path = parse_args(argv)
    result = asyncio.run(run(options))
    print(render(result))
    if json_path is not None:
        write_json(json_path, result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
