"""Hostile-input fuzzing of a live gateway: the harness that sends cases and checks the answers, the size
profiles, and the tally for the report (the cases themselves: hostile.py).

Sizes: the ``fuzz-ci`` profile (the default) keeps CI to a few hundred cases; ``fuzz-large`` runs thousands::

    CAPTIVATE_FUZZ_PROFILE=fuzz-large .venv/bin/pytest tests/fuzz --timeout 3600
    CAPTIVATE_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/fuzz/test_fuzz_envelopes.py --timeout 3600

``CAPTIVATE_FUZZ_REPORT=path.json`` writes ``{"fuzz_cases": N, "failures": F, ...}`` at the end of the
session (tools/fuzz_report.py does all of this in one command).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets
from hostile import LIMIT, SOCKET
from hypothesis import HealthCheck, settings

from harness.gateway import GatewayProcess
from harness.wire import MESSAGE_PATH, WireClient, tls

CONTROL_EVERY = 25
"""Cases between two checks that an unrelated conversation on another socket still gets its replies."""
WAIT = 20.0
"""A guard against hangs (never a timing assertion): how long one reply may take on a loaded machine."""

settings.register_profile(
    "fuzz-ci",
    max_examples=100,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.register_profile("fuzz-large", settings.get_profile("fuzz-ci"), max_examples=2500)


def fuzz_settings(share: float = 1.0) -> settings:
    """The profile named by CAPTIVATE_FUZZ_PROFILE, ``max_examples`` overridden by CAPTIVATE_FUZZ_EXAMPLES,
    scaled by ``share`` (a test that is a smaller part of the whole)."""
    base = settings.get_profile(os.environ.get("CAPTIVATE_FUZZ_PROFILE", "fuzz-ci"))
    examples = int(os.environ.get("CAPTIVATE_FUZZ_EXAMPLES", base.max_examples))
    return settings(base, max_examples=max(1, round(examples * share)))


TALLY: Counter[str] = Counter()
"""Cases sent, by test; what came back, by kind; the gateway's RSS (KiB) before and after, by module."""
OUTCOMES: Counter[str] = Counter()
MEMORY: dict[str, dict[str, int]] = {}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def fuzz_env() -> dict[str, str]:
    """Rate limits off (the fuzzer is one very busy client) and the size limits set explicitly."""
    return {
        "CAPTIVATE_RATE_PER_SOCKET": "0",
        "CAPTIVATE_RATE_PER_KEY": "0",
        "CAPTIVATE_STARTS_PER_MINUTE_PER_KEY": "0",
        "CAPTIVATE_MAX_FRAME_BYTES": str(LIMIT),
        "CAPTIVATE_MAX_BODY_BYTES": str(LIMIT),
        "CAPTIVATE_LOG_LEVEL": "warning",
    }


KNOWN_NOISE = "uvicorn.error: Invalid UTF-8 sequence received from client."
"""uvicorn logs this ERROR, with a traceback, for each text frame that is not UTF-8 (then closes 1007)."""
WARM_UP_ROUNDS = 3
MEMORY_BOUND_KIB = 50 * 1024
"""Generous on purpose: the gateway's RSS may grow with its SQLite cache, never by the fuzzed input."""


@dataclass
class Target:
    gateway: GatewayProcess
    key: str
    database: Path
    rss_before: int = 0

    @property
    def pid(self) -> int:
        assert self.gateway.proc is not None
        return self.gateway.proc.pid


async def warm_up(target: Target) -> None:
    """Traffic of every kind, so that lazy imports and first-use caches do not count as growth.

    A few rounds, not more: the gateway's RSS settles in the first one (measured: +124 KiB in round 1, then
    +24 KiB over rounds 2-20, against a bound of 50 MiB), and each round costs CPU in both processes.
    """
    outcomes = OUTCOMES.copy()
    harness = await Harness(target.gateway, target.key, "warm-up").open()
    try:
        for n in range(WARM_UP_ROUNDS):
            await harness.control_check()
            await harness.post(b'{"event": {"event_type": "nope"}}')
            await harness.send(f'{{"event": {{"event_type": "nope{n}"}}}}')
    finally:
        await harness.close()
    TALLY.pop("warm-up", None)
    OUTCOMES.clear()
    OUTCOMES.update(outcomes)


def check_memory(target: Target, module: str) -> None:
    """Gateway RSS after the module's cases stays within MEMORY_BOUND_KIB of the warmed-up RSS; and no
    error was logged on the way (a background task can fail where no reply shows it)."""
    assert target.gateway.proc is not None and target.gateway.proc.poll() is None, "the gateway process died"
    errors = [
        line for line in target.gateway.logs().splitlines() if " ERROR " in line and KNOWN_NOISE not in line
    ]
    assert not errors, "\n".join(errors[:20])
    after = rss_kib(target.pid)
    MEMORY[module] = {"rss_before_kib": target.rss_before, "rss_after_kib": after}
    print(
        f"\n{module}: gateway RSS {target.rss_before} KiB -> {after} KiB ({after - target.rss_before:+d} KiB)"
    )
    assert after - target.rss_before < MEMORY_BOUND_KIB, MEMORY[module]


def strict_json(raw: str | bytes) -> Any:
    """Parse what the gateway sent as standard JSON: valid UTF-8, no NaN or Infinity."""

    def constant(name: str) -> Any:
        raise AssertionError(f"the gateway sent the non-JSON constant {name}: {raw[:300]!r}")

    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return json.loads(text, parse_constant=constant)


def check_frame(raw: str | bytes) -> dict[str, Any]:
    """A platform frame: JSON ``{event: {event_type, event_payload}}``; an error is a 4xx ``general_error``."""
    assert isinstance(raw, str), f"binary frame from the gateway: {raw[:100]!r}"
    frame = strict_json(raw)
    event = frame.get("event") if isinstance(frame, dict) else None
    assert isinstance(event, dict) and isinstance(event.get("event_type"), str), raw[:300]
    assert isinstance(event.get("event_payload"), dict), raw[:300]
    if event["event_type"] == "general_error":
        payload = event["event_payload"]
        assert isinstance(payload.get("error_code"), int) and isinstance(payload.get("error_desc"), str), raw[
            :300
        ]
        assert 400 <= payload["error_code"] < 500, f"server error over WebSocket: {raw[:300]}"
    return frame


def check_http(response: httpx.Response, sent: int) -> None:
    """No 5xx; an error is a 4xx JSON ``{error_code, error_desc}``; an oversized body is a 413."""
    status = response.status_code
    assert status < 500, f"HTTP {status}: {response.text[:300]}"
    body = strict_json(response.content)
    assert isinstance(body, dict), response.text[:300]
    if status >= 400:
        assert body.get("error_code") == status and isinstance(body.get("error_desc"), str), response.text[
            :300
        ]
    else:
        assert status == 200, response.text[:300]
    if sent > LIMIT:
        assert status == 413, f"a {sent}-byte body got {status}"


async def fragments(parts: list[str] | list[bytes]) -> AsyncIterator[str | bytes]:
    for part in parts:
        yield part


class Harness:
    """A fuzzing WebSocket and HTTP client of one key, plus a control conversation on another socket.

    Every frame the fuzzing socket receives is checked by a reader task; a case sent over the socket is
    followed by a probe event with a fresh ``request_id``: its reply proves the socket is open and that the
    case's own replies (which come first) were checked.
    """

    def __init__(self, gateway: GatewayProcess, key: str, name: str, *, deflate: bool = True) -> None:
        self.gateway, self.key, self.name = gateway, key, name
        self.compression = "deflate" if deflate else None
        self.http = httpx.AsyncClient(
            base_url=gateway.http_url, headers={"x-api-key": key}, timeout=WAIT, verify=tls()
        )
        self.control = WireClient(gateway.http_url, gateway.ws_url, key)
        self.conversation_ids: list[str] = []
        self.problems: list[str] = []
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ws: Any = None
        self.socket_id = ""
        self.reader: asyncio.Task[None] | None = None
        self.cases = 0

    async def open(self, conversations: int = 3) -> Harness:
        await self.connect()
        await self.control.connect()
        self.control_id = await self.control.start(f"control-{uuid.uuid4().hex[:8]}")
        for _ in range(conversations):
            response = await self.http.post(MESSAGE_PATH, json=_start("fuzz-user", self.socket_id))
            self.conversation_ids.append(response.json()["conversation_id"])
        return self

    async def close(self) -> None:
        await self.disconnect()
        await self.control.close()
        await self.http.aclose()

    async def connect(self) -> None:
        url = f"{self.gateway.ws_url}/dev?apiKey={self.key}"
        self.ws = await websockets.connect(url, max_size=2**24, close_timeout=2, compression=self.compression)
        hello = check_frame(await asyncio.wait_for(self.ws.recv(), WAIT))
        self.socket_id = hello["event"]["event_payload"]["socket_id"]
        self.reader = asyncio.create_task(self._read(self.ws))

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.wait_for(self.reader, WAIT)

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                try:
                    frame = check_frame(raw)
                except AssertionError as exc:
                    self.problems.append(str(exc))
                    continue
                waiter = self.waiting.pop(str(frame.get("request_id")), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)
                    continue
                event = frame["event"]
                OUTCOMES[
                    " ".join(
                        ["ws", event["event_type"], str(event["event_payload"].get("error_code", ""))]
                    ).strip()
                ] += 1
        except websockets.ConnectionClosed:
            pass
        finally:
            for waiter in self.waiting.values():
                if not waiter.done():
                    waiter.set_exception(AssertionError(f"socket closed ({ws.close_code}) before the reply"))
            self.waiting.clear()

    def healthy(self) -> None:
        assert self.gateway.proc is not None, "the gateway was not started"
        assert self.gateway.proc.poll() is None, "the gateway process died:\n" + self.gateway.logs()[-3000:]
        assert not self.problems, self.problems[:3]

    def fill(self, body: bytes) -> bytes:
        """The case with the fuzzing socket's current ``socket_id`` in place of :data:`SOCKET`."""
        return body.replace(SOCKET.encode(), self.socket_id.encode())

    async def post(self, body: bytes) -> httpx.Response:
        """One case as an HTTP POST body."""
        body = self.fill(body)
        response = await self.http.post(
            MESSAGE_PATH, content=body, headers={"content-type": "application/json"}
        )
        check_http(response, len(body))
        OUTCOMES[f"http {response.status_code}"] += 1
        await self._counted()
        return response

    async def send(self, data: str | bytes | list[str] | list[bytes], *, text: bool | None = None) -> None:
        """One case as a WebSocket message (a list is sent as fragments); then the socket must still serve."""
        parts = [data] if isinstance(data, (str, bytes)) else data
        size = sum(len(p.encode() if isinstance(p, str) else p) for p in parts)
        try:
            await self.ws.send(data if isinstance(data, (str, bytes)) else fragments(data), text=text)
        except websockets.ConnectionClosed as exc:
            if size <= LIMIT:  # over the limit, the gateway may close while the message is still being sent
                sizes = [len(p.encode() if isinstance(p, str) else p) for p in parts][:20]
                raise AssertionError(
                    f"socket closed ({exc}) while sending {size} bytes in frames of {sizes}"
                ) from exc
        if size > LIMIT:
            await self.expect_close(1009, or_reset=True)
        else:
            await self.probe()
        await self._counted()

    async def send_envelope(self, body: bytes) -> None:
        """A case as a text frame when it is UTF-8 (a text frame cannot carry anything else), else binary."""
        body = self.fill(body)
        try:
            await self.send(body.decode("utf-8"))
        except UnicodeDecodeError:
            await self.send(body)

    def expect_reply(self, request_id: str) -> asyncio.Future[dict[str, Any]]:
        """The frame that will echo ``request_id`` (failed if the socket closes first)."""
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = waiter
        return waiter

    async def probe(self) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        waiter = self.expect_reply(request_id)
        event = {"event_type": "get_user_conversations", "event_payload": {"userId": "probe"}}
        await self.ws.send(json.dumps({"action": "sendMessage", "event": event, "request_id": request_id}))
        frame: dict[str, Any] = await asyncio.wait_for(waiter, WAIT)
        assert frame["event"]["event_type"] == "user_conversations", frame
        return frame

    async def expect_close(self, code: int, *, or_reset: bool = False) -> None:
        """The gateway closes the fuzzing socket with ``code``; a new one is opened for the next cases.

        ``or_reset``: the gateway refuses an oversized message as soon as its header arrives, while the rest
        is still on its way; its TCP stack may then answer that data with a reset, which discards the unread
        close frame on this side, so the client sees 1006. Counted apart, in the outcomes.
        """
        assert self.reader is not None
        await asyncio.wait_for(self.reader, WAIT)
        seen = self.ws.close_code
        assert seen == code or (or_reset and seen == 1006), f"closed with {seen}, expected {code}"
        OUTCOMES[f"ws close {seen}"] += 1
        self.ws.transport.abort()  # after a reset the old socket may still be open on this side: release it
        await self.connect()

    async def control_check(self) -> None:
        """Another socket's conversation is unaffected: a message still gets the demo agent's reply."""
        text = f"control {self.name} {self.cases}"
        await self.control.say(self.control_id, text, client_msg_id=uuid.uuid4().hex)
        await self.control.expect("bot_message", lambda p: f"You said: {text}" in json.dumps(p), timeout=WAIT)
        self.control.frames.clear()

    async def _counted(self) -> None:
        self.cases += 1
        TALLY[self.name] += 1
        self.healthy()
        if self.cases % CONTROL_EVERY == 0:
            await self.control_check()


def _start(user_id: str, socket_id: str) -> dict[str, Any]:
    event = {"event_type": "conversation_start", "event_payload": {"userId": user_id}, "socket_id": socket_id}
    return {"action": "sendMessage", "event": event}
