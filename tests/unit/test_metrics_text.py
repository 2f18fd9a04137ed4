"""The counters (and the agent latency histogram) on the per-message path are plain numbers read at scrape
time: /metrics shows them exactly as prometheus-client's ``Counter`` and ``Histogram`` did (names, help,
types, labels, values, order, ``_created``)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics

from captivate_chat_api.server.metrics import AGENT_BUCKETS, MESSAGES_IN, MESSAGES_OUT, Metrics


@dataclass
class Event:
    event_type: str
    payload: dict[str, Any] = field(default_factory=dict)


class CounterReference:
    """The four counters as ``Metrics`` declared them with prometheus-client's ``Counter``."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.started = Counter("captivate_conversations_started", "Conversations started", registry=r)
        self.client_events = Counter(
            "captivate_client_events",
            "Client events served, by event type and transport",
            ["event_type", "transport"],
            registry=r,
        )
        self.messages = Counter(
            "captivate_messages",
            "Messages stored: in (user_message) and out (bot_message, livechat_message)",
            ["direction", "event_type"],
            registry=r,
        )
        self.errors = Counter(
            "captivate_errors",
            "Errors by error_code: HTTP answers, WebSocket general_error frames and "
            "refused upgrades, and agent failures stored as general_error",
            ["source", "error_code"],
            registry=r,
        )
        self.agent_latency = Histogram(
            "captivate_agent_latency_seconds",
            "Agent call duration, by agent kind and outcome (ok, error, timeout)",
            ["kind", "outcome"],
            buckets=AGENT_BUCKETS,
            registry=r,
        )
        for event_type in sorted(MESSAGES_IN):
            self.messages.labels("in", event_type)
        for event_type in sorted(MESSAGES_OUT):
            self.messages.labels("out", event_type)


COUNTERS = (
    "captivate_conversations_started",
    "captivate_client_events",
    "captivate_messages",
    "captivate_errors",
    "captivate_agent_latency_seconds",
)


def counter_lines(text: str) -> list[str]:
    """The lines of the four counters' families, each ``_created`` value replaced by ``T``."""
    lines = [line for line in text.splitlines() if any(name in line for name in COUNTERS)]
    return [
        line if line.startswith("#") else re.sub(r"(_created(\{[^}]*\})?) \S+$", r"\1 T", line)
        for line in lines
    ]


def drive(metrics: Metrics, reference: CounterReference) -> None:
    # every bucket's edge, between edges, past the last one, zero; observed as Histogram.observe would
    for kind, outcome, amount in [
        ("demo", "ok", 0.0),
        ("demo", "ok", 0.005),
        ("webhook", "error", 0.0051),
        ("demo", "ok", 200.0),
        *[("openai", "ok", bound) for bound in AGENT_BUCKETS],
        *[("python", "timeout", bound * 1.5) for bound in AGENT_BUCKETS],
        ("demo", "ok", 1e-9),
    ]:
        metrics.agent_latency.observe((kind, outcome), amount)
        reference.agent_latency.labels(kind, outcome).observe(amount)
    calls: list[tuple[str, tuple[str, ...]]] = [
        ("client_event", ("user_message", "ws")),
        ("client_event", ("conversation_start", "http")),
        ("client_event", ("no_such_event", "http")),
        ("client_event", ("user_message", "ws")),
        ("error", ("http", "401")),
        ("error", ("ws", "400")),
        ("error", ("http", "401")),
    ]
    for name, (a, b) in calls:
        if name == "client_event":
            metrics.client_event(a, b == "ws")
            reference.client_events.labels(a if a != "no_such_event" else "other", b).inc()
        else:
            metrics.error(a, int(b))
            reference.errors.labels(a, b).inc()
    metrics.error("http", "weird")
    reference.errors.labels("http", "other").inc()
    for _ in range(3):
        metrics.conversation_started()
        reference.started.inc()
    for event in (
        Event("user_message"),
        Event("bot_message"),
        Event("user_message"),
        Event("conversation_end"),
        Event("general_error", {"error_code": 502}),
        Event("livechat_message"),
    ):
        metrics.stored(event)
        if event.event_type in MESSAGES_IN:
            reference.messages.labels("in", event.event_type).inc()
        elif event.event_type in MESSAGES_OUT:
            reference.messages.labels("out", event.event_type).inc()
        elif event.event_type == "general_error":
            reference.errors.labels("agent", "502").inc()


@pytest.mark.parametrize("created", [True, False])
def test_counters_render_as_prometheus_client_counters(
    created: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus_metrics, "_use_created", created)
    before = time.time()
    metrics, reference = Metrics(), CounterReference()
    fresh = counter_lines(metrics.render().decode())
    assert fresh == counter_lines(generate_latest(reference.registry).decode())
    assert "captivate_conversations_started_total 0.0" in fresh
    drive(metrics, reference)
    text = metrics.render().decode()
    assert counter_lines(text) == counter_lines(generate_latest(reference.registry).decode())
    assert 'captivate_client_events_total{event_type="user_message",transport="ws"} 2.0' in text
    assert 'captivate_errors_total{error_code="401",source="http"} 2.0' in text
    assert 'captivate_agent_latency_seconds_bucket{kind="openai",le="0.005",outcome="ok"} 1.0' in text
    assert 'captivate_agent_latency_seconds_count{kind="openai",outcome="ok"} 14.0' in text
    stamps = [
        float(v) for v in re.findall(r"^captivate_\w+_created(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    ]
    assert bool(stamps) == created
    assert all(before <= stamp <= time.time() for stamp in stamps)
