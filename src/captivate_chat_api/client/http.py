"""Client events over HTTP (as the npm client 7.0.0 sends them), with retries that never double a message.

Third-party errors are translated to the package's hierarchy here, at one boundary.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from typing import Any

import httpx

from ..errors import ChatConnectionError, ProtocolError, RequestTimeoutError, error_for_status
from ..protocol import encode_envelope
from .backoff import ReconnectPolicy
from .endpoints import Endpoints

log = logging.getLogger("captivate_chat_api.client")


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS verification (certifi's CA bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), made
    once per process and shared by the clients: loading the CA bundle costs ~20 ms of CPU, which every
    ``httpx.AsyncClient()`` would otherwise pay again."""
    return httpx.create_ssl_context()


MESSAGE_PATH = "/api/custom-channel/sockets/message"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_from_response(response: httpx.Response, conversation_id: str | None = None) -> ProtocolError:
    desc = f"{response.status_code} {response.reason_phrase}"
    try:
        body = response.json()
        if isinstance(body, dict):
            desc = str(body.get("error_desc") or body.get("error") or body.get("message") or desc)
    except ValueError:
        pass
    return error_for_status(response.status_code, desc, conversation_id, _retry_after(response))


def decode_body(response: httpx.Response) -> dict[str, Any]:
    """The reply body; a non-JSON 2xx body means success (the npm client's rule)."""
    if "application/json" in response.headers.get("content-type", ""):
        body = response.json()
        return body if isinstance(body, dict) else {"data": body}
    return {"status": "success", "message": response.text}


class HttpChannel:
    def __init__(
        self,
        api_key: str,
        endpoints: Endpoints,
        *,
        timeout: float,
        retry: ReconnectPolicy,
        client: httpx.AsyncClient | None = None,
        owns_client: bool | None = None,
    ) -> None:
        self._endpoints = endpoints
        self._retry = retry
        self._owns_client = client is None if owns_client is None else owns_client
        self._client = client or httpx.AsyncClient(timeout=timeout, verify=default_ssl_context())
        self._headers = {"x-api-key": api_key, "Accept": "application/json"}

    @property
    def client(self) -> httpx.AsyncClient:
        """The connection pool, shared with the file service."""
        return self._client

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def send_event(
        self, event_type: str, payload: dict[str, Any], socket_id: str | None, *, idempotent: bool
    ) -> dict[str, Any]:
        """POST one client event (see :meth:`send_envelope`)."""
        return await self.send_envelope(
            encode_envelope(event_type, payload), socket_id, idempotent=idempotent
        )

    async def send_envelope(
        self, envelope: dict[str, Any], socket_id: str | None, *, idempotent: bool
    ) -> dict[str, Any]:
        """POST one envelope. ``idempotent`` events (a message with its ``client_msg_id``) are retried on
        lost connections, timeouts, 429 and 5xx with the same body; others only when nothing was sent, or
        when the gateway said to retry (429 or 503 with ``Retry-After``: refused before anything was done,
        e.g. a store fault)."""
        body = {**envelope, "event": {**envelope["event"], "socket_id": socket_id}}
        body.pop("request_id", None)
        event_type = str(body["event"]["event_type"])
        url = self._endpoints.http_base + MESSAGE_PATH
        delays = self._retry.delays()
        payload = body["event"].get("event_payload")
        conversation_id = payload.get("conversation_id") if isinstance(payload, dict) else None
        while True:
            try:
                response = await self._client.post(url, json=body, headers=self._headers)
            except httpx.ConnectError as exc:
                failure: Exception = ChatConnectionError(f"cannot reach {self._endpoints.http_base}: {exc}")
            except httpx.TimeoutException as exc:
                failure = RequestTimeoutError(f"{event_type}: no answer in time ({type(exc).__name__})")
                if not idempotent:
                    raise failure from exc
            except httpx.TransportError as exc:
                failure = ChatConnectionError(f"{event_type}: connection lost ({type(exc).__name__})")
                if not idempotent:
                    raise failure from exc
            else:
                if response.is_success:
                    return decode_body(response)
                error = error_from_response(response, conversation_id)
                told_to_retry = response.status_code in (429, 503) and "retry-after" in response.headers
                if response.status_code not in RETRY_STATUSES or not (idempotent or told_to_retry):
                    raise error
                failure = error
            delay = next(delays, None)
            if delay is None:
                raise failure
            if isinstance(failure, ProtocolError) and getattr(failure, "retry_after", None):
                delay = max(delay, float(failure.retry_after))  # type: ignore[attr-defined]
            log.debug("retrying %s in %.2fs after %r", event_type, delay, failure)
            await asyncio.sleep(delay)

    async def get_json(
        self, url: str, *, authenticated: bool = True, conversation_id: str | None = None
    ) -> dict[str, Any]:
        try:
            response = await self._client.get(url, headers=self._headers if authenticated else None)
        except httpx.TimeoutException as exc:
            raise RequestTimeoutError(f"GET {url.split('?')[0]}: no answer in time") from exc
        except httpx.TransportError as exc:
            raise ChatConnectionError(f"GET {url.split('?')[0]}: {type(exc).__name__}") from exc
        if not response.is_success:
            raise error_from_response(response, conversation_id)
        return decode_body(response)

    async def post_json(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(url, json=body)
        except httpx.TimeoutException as exc:
            raise RequestTimeoutError(f"POST {url}: no answer in time") from exc
        except httpx.TransportError as exc:
            raise ChatConnectionError(f"POST {url}: {type(exc).__name__}") from exc
        if not response.is_success:
            raise error_from_response(response)
        return decode_body(response)
