"""Reconnect delays: exponential backoff with full jitter, bounded in delay and in attempts."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    initial_delay: float = 0.5
    max_delay: float = 30.0
    factor: float = 2.0
    max_attempts: int | None = None
    """None: keep trying until :meth:`CaptivateChatAPI.close`."""

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Full jitter (AWS architecture blog): uniform in [0, min(max, initial * factor**n)]."""
        rand = rng or random.Random()  # jitter spreads reconnects; it guards no secret  # nosec B311
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            ceiling = min(self.max_delay, self.initial_delay * self.factor**attempt)
            yield rand.uniform(0, ceiling) if attempt else min(ceiling, self.initial_delay)
            attempt += 1
