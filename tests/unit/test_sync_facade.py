"""The blocking facade exposes exactly the async SDK's public methods, with the same parameters."""

from __future__ import annotations

import inspect

import pytest

from captivate_chat_api import sync
from captivate_chat_api.client import CaptivateChatAPI, Conversation
from captivate_chat_api.client.manager import CaptivateChatManager

PAIRS = [
    (CaptivateChatAPI, sync.CaptivateChatAPI),
    (Conversation, sync.Conversation),
    (CaptivateChatManager, sync.CaptivateChatManager),
]
SYNC_ONLY = {("Conversation", "events"): {"timeout"}}
"""Parameters only the facade has: a blocking iterator needs a per-item timeout."""


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def parameters(signature: inspect.Signature, skip: set[str]) -> list[tuple[str, object, object]]:
    return [
        (p.name, p.kind, p.default)
        for p in signature.parameters.values()
        if p.name != "self" and p.name not in skip
    ]


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS, ids=[a.__name__ for a, _ in PAIRS])
def test_the_facade_has_the_same_public_methods_and_parameters(async_cls: type, sync_cls: type) -> None:
    async_methods, sync_methods = public_methods(async_cls), public_methods(sync_cls)
    assert sorted(sync_methods) == sorted(async_methods)
    for name, signature in async_methods.items():
        skip = SYNC_ONLY.get((async_cls.__name__, name), set())
        assert parameters(sync_methods[name], skip) == parameters(signature, set()), name
