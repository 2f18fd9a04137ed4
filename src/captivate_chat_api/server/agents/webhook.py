"""``webhook:URL``: an AI agent behind an HTTP endpoint, e.g. one written with PyPI ``captivate-ai-api``.

Each turn POSTs the ChatRequest JSON to the URL, signed as :mod:`captivate_chat_api.webhooks` describes,
and reads a response body (PROTOCOL.md section 8) back. An empty 2xx body means "I will answer later by
async push". Connection errors, timeouts, 429 and 5xx are retried with exponential backoff and full
jitter under one deadline, with the same delivery id; any other status fails at once. Every failure is
an :class:`AgentError`, so the client gets a ``general_error`` and the user's message stays stored.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import uuid
from datetime import UTC

import httpx
from pydantic import ValidationError

from ... import __version__
from ...protocol import AgentResponse, ChatRequest, ProtocolError, decode_json
from ...webhooks import DELIVERY_HEADER, TIMESTAMP_HEADER, sign_webhook
from .base import AgentError

log = logging.getLogger("captivate_chat_api.server.agents.webhook")


class _Retryable(Exception):
    """One attempt failed in a way worth retrying; ``wait`` is the agent's Retry-After, if any."""

    def __init__(self, error: AgentError, wait: float | None = None) -> None:
        self.error = error
        self.wait = wait


class WebhookAgent:
    """Calls an agent over HTTP(S). One connection pool per agent, reused across turns.

    Args:
        url: the agent's endpoint.
        secret: the channel's webhook secret; requests are signed when set.
        timeout: seconds for one attempt (connect, send, and read the whole answer).
        max_attempts: attempts per turn, the first included.
        total_timeout: seconds for the whole call, retries and waits included.
        backoff: the first retry waits up to this long; each later one up to twice as long.
        max_backoff: the cap of one backoff wait.
        max_retry_after: the longest ``Retry-After`` honoured (longer ones wait this long).
        max_response_bytes: a larger answer is an error.
    """

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        *,
        timeout: float = 10.0,
        max_attempts: int = 4,
        total_timeout: float = 25.0,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        max_retry_after: float = 10.0,
        max_response_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"a webhook agent needs an http(s) URL with a host, not {url!r}")
        if max_attempts < 1 or timeout <= 0 or total_timeout <= 0:
            raise ValueError("max_attempts, timeout and total_timeout must be positive")
        self.url = url
        self.name = "webhook:" + _redact(parsed)
        self._secret = secret or None
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.total_timeout = total_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.max_response_bytes = max_response_bytes
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": f"captivate-chat-gateway/{__version__}"},
        )

    def __repr__(self) -> str:  # never the secret, nor the URL's query (it may carry a token)
        return f"WebhookAgent({self.name!r}, signed={self._secret is not None})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, request: ChatRequest) -> AgentResponse:
        body = request.model_dump_json().encode()
        delivery = str(uuid.uuid4())  # one id for every attempt: the agent can drop a duplicate
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout
        for attempt in range(1, self.max_attempts + 1):
            budget = max(0.001, min(self.timeout, deadline - loop.time()))
            try:
                return await self._attempt(request, body, delivery, budget)
            except _Retryable as failed:
                error = failed.error
                delay = self._delay(attempt, failed.wait)
                if attempt == self.max_attempts or loop.time() + delay >= deadline:
                    break
                log.info(
                    "%s delivery %s attempt %d/%d: %s; retrying in %.2f s",
                    self.name,
                    delivery,
                    attempt,
                    self.max_attempts,
                    error.error_desc,
                    delay,
                )
                await asyncio.sleep(delay)
        log.warning(
            "%s delivery %s failed after %d attempt(s): %s", self.name, delivery, attempt, error.error_desc
        )
        plural = "s" if attempt > 1 else ""
        raise AgentError(f"{error.error_desc} ({attempt} attempt{plural})", error.error_code)

    async def _attempt(
        self, request: ChatRequest, body: bytes, delivery: str, budget: float
    ) -> AgentResponse:
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery}
        if self._secret is not None:
            headers.update(sign_webhook(self._secret, body))
        else:
            headers[TIMESTAMP_HEADER] = str(int(time.time()))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(budget):
                status, content, retry_after = await self._post(body, headers, budget)
        except (TimeoutError, httpx.TimeoutException):
            raise _Retryable(
                AgentError(f"the agent webhook did not answer within {budget:.3g} s", 504)
            ) from None
        except httpx.TransportError as exc:
            raise _Retryable(
                AgentError(f"the agent webhook could not be reached ({_reason(exc)})", 502)
            ) from None
        except httpx.HTTPError as exc:
            raise AgentError(f"the agent webhook call failed ({_reason(exc)})", 502) from None
        log.debug(
            "%s delivery %s: HTTP %d in %.1f ms",
            self.name,
            delivery,
            status,
            (time.perf_counter() - started) * 1e3,
        )
        if 200 <= status < 300:
            return self._parse(content, request)
        if status == 429 or status >= 500:
            raise _Retryable(AgentError(f"the agent webhook answered HTTP {status}", 502), retry_after)
        log.debug("%s delivery %s: HTTP %d body %r", self.name, delivery, status, content[:200])
        hint = " (does the agent expect another webhook secret?)" if status in (401, 403) else ""
        raise AgentError(f"the agent webhook refused the request: HTTP {status}{hint}", 502)

    async def _post(
        self, body: bytes, headers: dict[str, str], budget: float
    ) -> tuple[int, bytes, float | None]:
        async with self._client.stream(
            "POST", self.url, content=body, headers=headers, timeout=budget
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise AgentError(
                        f"the agent webhook's answer is larger than {self.max_response_bytes} bytes", 502
                    )
                chunks.append(chunk)
            return response.status_code, b"".join(chunks), _retry_after(response.headers.get("Retry-After"))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        # Retry jitter, not a secret.
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))  # nosec B311

    def _parse(self, content: bytes, request: ChatRequest) -> AgentResponse:
        if not content.strip():
            return AgentResponse(session_id=request.session_id)  # the answer comes later, by push
        try:  # the same decoder as client input: no NaN, no lone surrogates, bounded nesting
            data = decode_json(content)
        except ProtocolError as exc:
            raise AgentError(f"the agent webhook answered invalid JSON ({exc.error_desc})", 502) from None
        if data is None:  # a web framework's "no return value"
            return AgentResponse(session_id=request.session_id)
        try:
            return AgentResponse.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise AgentError(
                f"the agent webhook answered an invalid response ({where}: {first['msg']})", 502
            ) from None


def _redact(url: httpx.URL) -> str:
    """The URL without credentials or query string, for logs and error texts."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


def _reason(exc: httpx.HTTPError) -> str:
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:  # anyio says "All connection attempts failed"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip()[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())
