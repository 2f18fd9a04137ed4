"""API keys: generated with 256 bits of entropy, stored as SHA-256 digests, shown once.

A fast hash is right here (unlike passwords): keys are random, so there is nothing to brute-force, and
the lookup by digest avoids comparing secrets byte by byte in Python.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "cck_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """What lists show of a key: enough to recognise it, too little to use it."""
    return key[:10] + "…" if len(key) > 14 else key[:3] + "…"
