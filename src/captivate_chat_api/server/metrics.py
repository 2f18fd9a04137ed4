"""Prometheus metrics of one gateway, served at ``/metrics``.

Each app has its own registry (never the process-wide default), so several gateways in one process
(tests, the in-process test kit) never clash. Every label has a small, fixed set of values: event types,
roles, agent kinds, error codes. A key, token, URL or id is never a label (cardinality and secrecy).
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..protocol import CLIENT_EVENT_MODELS

__all__ = ["AGENT_KINDS", "CONTENT_TYPE", "Metrics", "MetricsMiddleware"]

T = TypeVar("T")
CONTENT_TYPE = CONTENT_TYPE_LATEST
ROLES = ("client", "human")
AGENT_KINDS = ("demo", "webhook", "openai", "python", "embedded")
"""``embedded``: an agent passed to ``create_app(agent=...)`` (the test kit, embedding)."""
MESSAGES_IN = frozenset({"user_message"})
MESSAGES_OUT = frozenset({"bot_message", "livechat_message"})
AGENT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BROKER_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
"""Seconds; fine below 50 ms (the goal for a message between two processes of one deployment)."""


class _Socket(Protocol):
    role: str


class _Event(Protocol):
    @property
    def event_type(self) -> str: ...

    @property
    def payload(self) -> dict[str, Any]: ...


def _code(value: object) -> str:
    """An error code as a label: an HTTP-like status, anything else is ``other`` (bounded cardinality)."""
    return str(value) if isinstance(value, int) and 100 <= value <= 599 else "other"


class _SocketCollector:
    """Open sockets by role, counted at scrape time from the hub (no bookkeeping on the hot path)."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[_Socket]] | None = None

    def collect(self) -> Iterator[Metric]:
        counts = dict.fromkeys(ROLES, 0)
        for connection in self.source() if self.source is not None else ():
            if connection.role in counts:
                counts[connection.role] += 1
        family = GaugeMetricFamily(
            "captivate_open_sockets", "Open WebSockets, by role (client or human agent)", labels=["role"]
        )
        for role, count in counts.items():
            family.add_metric([role], count)
        yield family


class _Counts:
    """A counter kept as plain numbers, by label values: ``inc`` is a dictionary update, no lock (every
    increment happens on the event loop's thread). :class:`_Counters` reads them at scrape time, as
    prometheus-client's ``Counter`` would expose them: the same name, help, labels, ``_total`` value and
    ``_created`` time (the first increment of a label set, or when it was declared)."""

    __slots__ = ("counts", "created", "documentation", "labelnames", "name")

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.counts: dict[tuple[str, ...], float] = {}
        self.created: dict[tuple[str, ...], float] = {}
        if not labelnames:
            self.declare(())

    def declare(self, values: tuple[str, ...]) -> None:
        """Show this label set (at 0) from now on, as ``Counter.labels(...)`` does."""
        if values not in self.counts:
            self.created[values] = time.time()
            self.counts[values] = 0.0

    def inc(self, values: tuple[str, ...] = ()) -> None:
        counts = self.counts
        if values in counts:
            counts[values] += 1.0
        else:
            self.declare(values)
            counts[values] = 1.0

    def value(self, *values: str) -> float:
        return self.counts.get(values, 0.0)

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(
            self.name, self.documentation, labels=self.labelnames if self.labelnames else None
        )
        created = self.created
        use_created = prometheus_metrics._use_created  # PROMETHEUS_DISABLE_CREATED_SERIES, as for Counter
        for values, count in list(self.counts.items()):
            family.add_metric(list(values), count, created[values] if use_created else None)
        return family


class _Histogram:
    """A labelled histogram kept as plain numbers (``observe``: a bisection and two additions, no lock),
    exposed as prometheus-client's ``Histogram`` would: ``_bucket`` (cumulative, ``le``), ``_count``,
    ``_sum``, ``_created``, label sets in the order they were first observed."""

    def __init__(
        self, name: str, documentation: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = (*buckets, math.inf) if buckets[-1] != math.inf else buckets
        self._les = [floatToGoString(bound) for bound in self.bounds]  # type: ignore[no-untyped-call]
        self.series: dict[tuple[str, ...], list[float]] = {}
        """Label values -> per-bucket counts (not cumulative), then the sum, then the creation time."""

    def observe(self, values: tuple[str, ...], amount: float) -> None:
        series = self.series.get(values)
        if series is None:
            series = self.series[values] = [0.0] * len(self.bounds) + [0.0, time.time()]
        index = bisect.bisect_left(self.bounds, amount)  # the first bound >= amount, as Histogram.observe
        if index < len(self.bounds) and not math.isnan(amount):  # (a NaN is in no bucket)
            series[index] += 1.0
        series[-2] += amount

    def family(self) -> Metric:
        family = Metric(self.name, self.documentation, "histogram")
        use_created = prometheus_metrics._use_created
        width = len(self.bounds)
        for values, series in list(self.series.items()):
            labels = dict(zip(self.labelnames, values, strict=True))
            total = 0.0
            for index in range(width):
                total += series[index]
                family.add_sample(self.name + "_bucket", {**labels, "le": self._les[index]}, total)
            family.add_sample(self.name + "_count", dict(labels), total)
            if self.bounds[0] >= 0:
                family.add_sample(self.name + "_sum", dict(labels), series[-2])
            if use_created:
                family.add_sample(self.name + "_created", dict(labels), series[-1])
        return family


class _Counters:
    """The :class:`_Counts` (and :class:`_Histogram`) of one registry, collected in their order of
    declaration."""

    def __init__(self, *counters: _Counts | _Histogram) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        for counter in self.counters:
            yield counter.family()


class Metrics:
    """The gateway's counters, gauges and histograms, on a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sockets = _SocketCollector()
        r.register(self.sockets)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        # counted on the per-message path: plain numbers, exposed at scrape time (no lock per increment)
        self.conversations_started = _Counts("captivate_conversations_started", "Conversations started")
        self.client_events = _Counts(
            "captivate_client_events",
            "Client events served, by event type and transport",
            ("event_type", "transport"),
        )
        self.messages = _Counts(
            "captivate_messages",
            "Messages stored: in (user_message) and out (bot_message, livechat_message)",
            ("direction", "event_type"),
        )
        self.errors = _Counts(
            "captivate_errors",
            "Errors by error_code: HTTP answers, WebSocket general_error frames and "
            "refused upgrades, and agent failures stored as general_error",
            ("source", "error_code"),
        )
        self.agent_latency = _Histogram(
            "captivate_agent_latency_seconds",
            "Agent call duration, by agent kind and outcome (ok, error, timeout)",
            ("kind", "outcome"),
            AGENT_BUCKETS,
        )
        r.register(
            _Counters(
                self.conversations_started,
                self.client_events,
                self.messages,
                self.errors,
                self.agent_latency,
            )
        )
        self.broker_lag = Gauge(
            "captivate_broker_lag_seconds",
            "Delay of events relayed by the broker from other nodes (0: no broker)",
            registry=r,
        )
        self.broker_delay = Histogram(
            "captivate_broker_delay_seconds",
            "Delay of each message relayed by the broker from another node, from its publish to its delivery here",
            buckets=BROKER_BUCKETS,
            registry=r,
        )
        self._client_event_types = frozenset(CLIENT_EVENT_MODELS)
        for event_type in sorted(MESSAGES_IN):
            self.messages.declare(("in", event_type))
        for event_type in sorted(MESSAGES_OUT):
            self.messages.declare(("out", event_type))

    # hooks called by the gateway ------------------------------------------------------------------

    def watch_sockets(self, source: Callable[[], Iterable[_Socket]]) -> None:
        """Count open sockets from ``source`` (the hub's live connections) at each scrape."""
        self.sockets.source = source

    def client_event(self, event_type: str, via_websocket: bool) -> None:
        label = event_type if event_type in self._client_event_types else "other"
        self.client_events.inc((label, "ws" if via_websocket else "http"))

    def conversation_started(self) -> None:
        self.conversations_started.inc()

    def stored(self, event: _Event) -> None:
        """An event committed to a conversation's log (counted once, on the node that stored it)."""
        event_type = event.event_type
        if event_type in MESSAGES_OUT:
            self.messages.inc(("out", event_type))
        elif event_type in MESSAGES_IN:
            self.messages.inc(("in", event_type))
        elif event_type == "general_error":
            self.errors.inc(("agent", _code(event.payload.get("error_code"))))

    def error(self, source: str, error_code: object) -> None:
        """``source``: ``http`` (an error answer), ``ws`` (a general_error frame or a refused upgrade)."""
        self.errors.inc((source, _code(error_code)))

    async def time_agent(self, kind: str, call: Awaitable[T]) -> T:
        """Await an agent call, observing its duration; a cancelled call (the turn's timeout) is ``timeout``."""
        kind = kind if kind in AGENT_KINDS else "other"
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await call
            outcome = "ok"
            return result
        except asyncio.CancelledError:
            outcome = "timeout"
            raise
        finally:
            self.agent_latency.observe((kind, outcome), time.perf_counter() - started)

    def set_broker_lag(self, seconds: float) -> None:
        """For the broker: the age of the last event relayed from another node when it was delivered here."""
        seconds = max(0.0, seconds)
        self.broker_lag.set(seconds)
        self.broker_delay.observe(seconds)

    # exposition -----------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition format (content type :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP error answer (status >= 400) and every refused WebSocket upgrade by status.

    It sits inside Starlette's error middleware: an unhandled exception (answered 500 further out) is
    counted here as it passes.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        start = "http.response.start" if kind == "http" else "websocket.http.response.start"
        source = "http" if kind == "http" else "ws"
        metrics = self.metrics

        answered = False

        async def watch(message: Message) -> None:
            nonlocal answered
            if message["type"] == start:
                answered = True
                if message["status"] >= 400:
                    metrics.error(source, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if not answered and kind == "http":
                metrics.error(source, 500)
            raise
