"""The gateway's rate limits as one object (``server/limits.py``): which bucket an event is charged to."""

from __future__ import annotations

import pytest

from captivate_chat_api.errors import RateLimitError
from captivate_chat_api.server.limits import Limits


def allowed(limits: Limits, channel: str, socket: str | None) -> bool:
    try:
        limits.check(channel, socket)
    except RateLimitError:
        return False
    return True


def test_a_socket_over_its_rate_does_not_spend_its_keys_tokens() -> None:
    # the key's bucket barely refills within a test (0.001/s): only what is charged to it is gone
    limits = Limits(socket_rate=0.001, socket_burst=1, key_rate=0.001, key_burst=3)
    assert allowed(limits, "ch", "noisy")
    assert [allowed(limits, "ch", "noisy") for _ in range(20)] == [False] * 20  # the socket's own limit
    assert allowed(limits, "ch", "quiet-1") and allowed(limits, "ch", "quiet-2")  # the key kept 2 of 3
    assert not allowed(limits, "ch", "quiet-3")  # and now it is spent: the key's own limit


def test_an_event_over_the_keys_rate_is_refused_whatever_the_socket() -> None:
    limits = Limits(socket_rate=0.001, socket_burst=5, key_rate=0.001, key_burst=2)
    assert allowed(limits, "ch", "a") and allowed(limits, "ch", None)  # an HTTP event has no socket
    with pytest.raises(RateLimitError) as refused:
        limits.check("ch", "b")
    assert refused.value.retry_after > 0
    assert allowed(limits, "other-channel", "b")  # another key's bucket is its own
