"""Signed local file URLs: ``/files/KEY?expires=UNIX&sig=HMAC`` with a per-deployment secret from the store."""

from __future__ import annotations

import base64
import hashlib
import hmac


class UrlSigner:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def __repr__(self) -> str:
        return "UrlSigner(<secret>)"

    def signature(self, file_key: str, expires: int) -> str:
        mac = hmac.new(self._secret, f"{file_key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def valid(self, file_key: str, expires: str, signature: str, now: float) -> bool:
        """True when the signature is the one made for this key and expiry, and the expiry is not past."""
        try:
            at = int(expires)
        except ValueError:
            return False
        expected = self.signature(file_key, at)
        return hmac.compare_digest(expected.encode(), signature.encode()) and now < at
