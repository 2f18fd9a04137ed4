"""Operations endpoints: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics`` (Prometheus).

None needs a key: deploy them on a network only the orchestrator and Prometheus reach. Nothing they
answer carries a secret (readiness errors are redacted).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ...redact import redact
from ..metrics import CONTENT_TYPE, Metrics
from ..store.faults import DISK_FULL

router = APIRouter(tags=["operations"])
PROBE_TIMEOUT = 1.5
"""A dependency that does not answer within this many seconds is reported not ready; the probes run at
once, so ``/readyz`` answers within its 2 s budget even when the store hangs."""
_in_flight: weakref.WeakKeyDictionary[Any, dict[str, asyncio.Task[object]]] = weakref.WeakKeyDictionary()
"""One probe per dependency at a time: a hung store is not sent a new probe by every /readyz call."""


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP (no dependency is checked)."""
    return {"status": "ok"}


def single_flight(
    owner: Any, name: str, ping: Callable[[], Awaitable[object]]
) -> Callable[[], Awaitable[object]]:
    """``ping``, joined by later callers while it runs (one per ``owner`` and ``name``)."""

    async def joined() -> object:
        tasks = _in_flight.setdefault(owner, {})
        task = tasks.get(name)
        if task is None or task.done():
            task = tasks[name] = asyncio.ensure_future(ping())
        return await asyncio.shield(task)

    return joined


async def probe(ping: Callable[[], Awaitable[object]]) -> str:
    """``ok``, or ``error: …`` (redacted and short: the answer is public)."""
    try:
        await asyncio.wait_for(ping(), PROBE_TIMEOUT)
    except TimeoutError:
        return f"error: no answer within {PROBE_TIMEOUT:g} s"
    except Exception as exc:  # noqa: BLE001 -- any failure of a dependency means "not ready"
        return "error: " + redact(f"{type(exc).__name__}: {exc}")[:200]
    return "ok"


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 when the store answers a read *and* takes a (no-op) write, no write failed for a
    full disk in the last few seconds, and the broker (if any) answers a ping; else 503. Within 2 s."""
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is None:
        return JSONResponse({"status": "not ready", "store": "error: starting"}, status_code=503)
    store = gateway.store
    pings: dict[str, Callable[[], Awaitable[object]]] = {
        "store": single_flight(store, "read", store.ping),
        "store_write": single_flight(store, "write", store.ping_write),
    }
    broker = getattr(gateway, "broker", None) or getattr(gateway.hub, "broker", None)
    if broker is not None:
        pings["broker"] = broker.ping
    results = await asyncio.gather(*(probe(ping) for ping in pings.values()))
    checks = dict(zip(pings, results))
    # A no-op write does not grow the file: a full disk shows in the writes that just failed. (A lock or an
    # outage the probe itself sees, and it succeeds once they clear: readiness recovers with the store.)
    fault = gateway.faults.active(DISK_FULL.kind)
    if fault is not None and checks["store_write"] == "ok":
        checks["store_write"] = f"error: recent writes failed ({fault.kind}, {fault.status})"
    ready = all(result == "ok" for result in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503
    )


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition format."""
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE)
