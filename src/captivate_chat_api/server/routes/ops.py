"""Operations endpoints: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics`` (Prometheus).

None needs a key: deploy them on a network only the orchestrator and Prometheus reach. Nothing they
answer carries a secret (readiness errors are redacted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ...redact import redact
from ..metrics import CONTENT_TYPE, Metrics

router = APIRouter(tags=["operations"])
PROBE_TIMEOUT = 2.0
"""A dependency that does not answer a ping within this many seconds is reported not ready."""


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP (no dependency is checked)."""
    return {"status": "ok"}


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
    """Readiness: 200 when the store (and the broker, once there is one) answers a ping, else 503."""
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is None:
        return JSONResponse({"status": "not ready", "store": "error: starting"}, status_code=503)
    checks = {"store": await probe(gateway.store.ping)}
    broker = getattr(gateway, "broker", None) or getattr(gateway.hub, "broker", None)
    if broker is not None:
        checks["broker"] = await probe(broker.ping)
    ready = all(result == "ok" for result in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition format."""
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE)
