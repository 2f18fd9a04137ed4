"""``openai:MODEL``: a model behind an OpenAI-compatible chat-completions API, through the ``openai`` package.

Settings come from the gateway's environment, read when a channel first needs the agent:
``CAPTIVATE_AGENT_BASE_URL`` (default: OpenAI's), ``CAPTIVATE_AGENT_API_KEY`` (else ``OPENAI_API_KEY``),
``CAPTIVATE_AGENT_SYSTEM_PROMPT``, ``CAPTIVATE_AGENT_HISTORY`` (earlier messages sent, default 20) and
``CAPTIVATE_AGENT_MAX_RETRIES`` (default 2), ``CAPTIVATE_AGENT_FILE_CHARS`` (characters of each attached
file's extracted text put into the context, default 20000; the whole turn holds at most 3 times that).
The history is the conversation's stored transcript: user
messages as ``user``, bot and human-agent replies as ``assistant``; system notes are left out.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ...protocol import AgentResponse, ChatRequest, is_empty_text, text_content
from ...protocol.files import file_text
from .base import AgentError

if TYPE_CHECKING:
    from ..store import Store, StoredEvent

log = logging.getLogger("captivate_chat_api.server.agents.openai")

ROLES = {"user": "user", "bot": "assistant", "human_agent": "assistant"}
GREETING_REQUEST = (
    "The user has just opened the chat and has not written anything yet. Greet them briefly and offer help."
)
NO_KEY = "none"  # sent to a local OpenAI-compatible server that needs no key (the openai package wants one)
INSTALL_HINT = "the openai agent needs the openai package: pip install 'captivate-chat-api[openai]'"


@dataclass(frozen=True)
class OpenAISettings:
    api_key: str = field(repr=False)
    base_url: str | None = None
    system_prompt: str | None = None
    history: int = 20
    max_retries: int = 2
    timeout: float = 60.0
    """Seconds for one HTTP read (the runner's ``agent_timeout`` bounds the whole turn)."""
    file_chars: int = 20_000
    """Characters of one attached file's text sent to the model (the turn: at most 3 times this)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OpenAISettings:
        """Raises AgentError when the API key is missing or a number is not one."""
        base_url = env.get("CAPTIVATE_AGENT_BASE_URL") or None
        api_key = env.get("CAPTIVATE_AGENT_API_KEY") or env.get("OPENAI_API_KEY")
        if not api_key:
            if base_url is None:
                raise AgentError(
                    "the openai agent has no API key: set CAPTIVATE_AGENT_API_KEY or OPENAI_API_KEY", 502
                )
            api_key = NO_KEY
        return cls(
            api_key=api_key,
            base_url=base_url,
            system_prompt=env.get("CAPTIVATE_AGENT_SYSTEM_PROMPT") or None,
            history=_count(env, "CAPTIVATE_AGENT_HISTORY", 20),
            max_retries=_count(env, "CAPTIVATE_AGENT_MAX_RETRIES", 2),
            file_chars=_count(env, "CAPTIVATE_AGENT_FILE_CHARS", 20_000),
        )


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise AgentError(f"{name} must be a whole number >= 0, not {raw!r}", 502)
    return value


def _openai_installed() -> bool:
    return importlib.util.find_spec("openai") is not None


def text_of(content: Any) -> str:
    """A stored message's content as the model sees it: its text, or the JSON of a rich message (as the
    gateway makes ``user_input`` of a user's message)."""
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return str(content["text"])
    if isinstance(content, str):
        return content
    return json.dumps(content, ensure_ascii=False)


def earlier_messages(events: Sequence[StoredEvent], user_input: str | None) -> list[dict[str, str]]:
    """The transcript before the user message this turn answers, as chat messages.

    That message is stored already (the last user message with its text), and so may be messages the user
    sent after it, each with a later turn of its own: those are left out. Replies stored after it (to
    earlier messages, while the user kept typing) stay.
    """
    events = list(events)
    if user_input is not None:
        for index in range(len(events) - 1, -1, -1):
            event = events[index]
            if event.sender == "user" and text_of(event.payload.get("content")) == user_input:
                events = events[:index] + [e for e in events[index + 1 :] if e.sender != "user"]
                break
    messages = []
    for event in events:
        role = ROLES.get(event.sender or "")
        content = event.payload.get("content")
        if role is None or (event.sender == "user" and is_empty_text(content)):
            continue
        messages.append({"role": role, "content": text_of(content)})
    return messages


def files_context(files: Sequence[dict[str, Any]], per_file: int) -> str:
    """The attached files' extracted text for the model: each under its name, each cut at ``per_file``
    characters and all together at three times that (a cut says how much was left out)."""
    blocks, budget = [], per_file * 3
    for file in files:
        text = file_text(file)
        room = max(0, min(per_file, budget))
        shown = text[:room]
        budget -= len(shown)
        block = f"[attached file: {file.get('filename') or 'file'} ({file.get('type') or 'unknown type'})]\n{shown}"
        if len(text) > len(shown):
            block += f"\n[... {len(text) - len(shown)} more characters of this file left out]"
        blocks.append(block + "\n[end of file]")
    return "\n\n".join(blocks)


def current_message(request: ChatRequest, file_chars: int = 20_000) -> dict[str, str]:
    """What the user did this turn: their text (with the attached files' text), the actions they sent, or
    (bot-first) a greeting request."""
    if request.incoming_action:
        lines = [
            f"[action {a.id}] {json.dumps(a.payload, ensure_ascii=False)}" for a in request.incoming_action
        ]
        return {"role": "user", "content": "\n".join(lines)}
    if request.files:
        attached = files_context(request.files, file_chars)
        return {
            "role": "user",
            "content": f"{request.user_input}\n\n{attached}" if request.user_input else attached,
        }
    if request.user_input:
        return {"role": "user", "content": request.user_input}
    return {"role": "user", "content": GREETING_REQUEST}


class OpenAIAgent:
    """Streams when the runner lets it (``stream``); ``__call__`` answers in one piece."""

    def __init__(
        self,
        model: str,
        settings: OpenAISettings,
        *,
        store: Store | None = None,
        channel_id: str | None = None,
    ) -> None:
        """``store`` and ``channel_id`` (the channel this agent answers for) supply the history."""
        if store is not None and channel_id is None:
            raise ValueError("the history is read per channel: give channel_id with store")
        if not _openai_installed():
            raise AgentError(INSTALL_HINT, 502)
        self.name = f"openai:{model}"
        self.model = model
        self.settings = settings
        self._store = store
        self._channel_id = channel_id or ""
        self._openai: Any = None
        self._client: Any = None
        self._ready = asyncio.Lock()

    @classmethod
    def from_spec(
        cls, model: str, *, store: Store | None = None, channel_id: str | None = None
    ) -> OpenAIAgent:
        """The agent for ``openai:MODEL`` with settings from the environment; ``store`` supplies the
        history of ``channel_id``'s conversations."""
        if not _openai_installed():  # the more basic of two mistakes: before the settings
            raise AgentError(INSTALL_HINT, 502)
        return cls(model, OpenAISettings.from_env(), store=store, channel_id=channel_id)

    async def _api(self) -> Any:
        """The API client, made on first use. Importing ``openai`` takes ~2 s (its many types): a worker
        thread does it, so the gateway's other conversations do not freeze meanwhile."""
        async with self._ready:
            if self._client is None:
                self._openai, self._client = await asyncio.to_thread(self._make_client)
        return self._client

    def _make_client(self) -> tuple[Any, Any]:
        import openai

        client = openai.AsyncOpenAI(
            api_key=self.settings.api_key,
            base_url=self.settings.base_url,
            max_retries=self.settings.max_retries,
            timeout=self.settings.timeout,
        )
        return openai, client

    async def aclose(self) -> None:
        """Close the HTTP connections to the model API."""
        if self._client is not None:
            await self._client.close()

    async def messages(self, request: ChatRequest) -> list[dict[str, str]]:
        """System prompt, recent history, then this turn's input: what the model is sent."""
        history: list[dict[str, str]] = []
        if self._store is not None and request.session_id and self.settings.history:
            events = await self._store.messages(self._channel_id, request.session_id)
            pending = None if request.incoming_action else (request.user_input or "")
            history = earlier_messages(events, pending)[-self.settings.history :]
        system = (
            [{"role": "system", "content": self.settings.system_prompt}]
            if self.settings.system_prompt
            else []
        )
        return [*system, *history, current_message(request, self.settings.file_chars)]

    async def __call__(self, request: ChatRequest) -> AgentResponse:
        messages, client = await self.messages(request), await self._api()
        try:
            completion = await client.chat.completions.create(model=self.model, messages=messages)
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from None
        text = completion.choices[0].message.content if completion.choices else None
        return self._response(request, text or "")

    async def stream(self, request: ChatRequest, emit: Callable[[str], None]) -> AgentResponse:
        messages, client = await self.messages(request), await self._api()
        parts: list[str] = []
        try:
            chunks = await client.chat.completions.create(model=self.model, messages=messages, stream=True)
            try:
                async for chunk in chunks:
                    delta = chunk.choices[0].delta.content if chunk.choices else None
                    if delta:
                        parts.append(delta)
                        emit(delta)
            finally:
                await chunks.close()
        except (
            self._openai.OpenAIError,
            httpx.HTTPError,
        ) as exc:  # openai < 3 lets a cut stream's httpx error out
            raise self._error(exc, cut=bool(parts)) from None
        return self._response(request, "".join(parts))

    def _response(self, request: ChatRequest, text: str) -> AgentResponse:
        if not text.strip():
            raise AgentError(f"{self.name} returned an empty reply", 502)
        return AgentResponse(
            response=[text_content(text)], session_id=request.session_id, hasLivechat=request.hasLivechat
        )

    def _error(self, exc: Exception, *, cut: bool = False) -> AgentError:
        """The client-facing error for a failed API call (``cut``: after part of the reply streamed).
        Details go to the log, never the key."""
        openai = self._openai
        if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
            error = AgentError(f"{self.name}: the model API did not answer in time", 504)
        elif isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
            lost = "lost the connection to the model API mid-reply" if cut else "cannot reach the model API"
            error = AgentError(f"{self.name}: {lost}", 502)
        elif isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            reason = {
                401: "API key refused",
                403: "access denied",
                404: "unknown model or URL",
                429: "rate limited or out of quota",
            }.get(status, "server error" if status >= 500 else "request refused")
            error = AgentError(f"{self.name}: the model API answered {status} ({reason})", 502)
        else:
            error = AgentError(f"{self.name}: the model API failed ({type(exc).__name__})", 502)
        if getattr(exc, "status_code", None) in (401, 403):
            log.warning("%s", error.error_desc)  # the body may quote the key, even masked: leave it out
        else:
            log.warning("%s: %s", error.error_desc, self._redact(str(exc)) or type(exc).__name__)
        return error

    def _redact(self, text: str) -> str:
        key = self.settings.api_key
        return text.replace(key, "[REDACTED]") if key != NO_KEY else text


__all__ = ["OpenAIAgent", "OpenAISettings", "current_message", "earlier_messages", "files_context", "text_of"]
