"""A stand-in for an OpenAI-compatible API (a third party the tests cannot reach), on a loopback port.

It speaks the real chat-completions wire format: ``POST /v1/chat/completions`` answers a
``chat.completion`` JSON object, or with ``stream: true`` a ``text/event-stream`` of
``chat.completion.chunk`` objects ended by ``data: [DONE]``; errors use OpenAI's ``{"error": {...}}``
body. It checks the bearer key, records what it was sent, and can fail or stall on demand.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_error"}


def echo(messages: list[dict[str, Any]]) -> str:
    """The default reply: the last user message, echoed."""
    last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    return f"You said: {last}"


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": code,
        }
    }


class FakeOpenAI:
    def __init__(
        self, api_key: str, models: tuple[str, ...] = ("fake-model",), chunk_delay: float = 0.0
    ) -> None:
        self.api_key = api_key
        self.models = models
        self.chunk_delay = chunk_delay
        """Seconds between streamed chunks (so the first can be seen well before the last)."""
        self.reply: Callable[[list[dict[str, Any]]], str] = echo
        self.requests: list[dict[str, Any]] = []
        """Bodies of the valid requests (right key, known model), in the order they arrived."""
        self.attempts = 0
        self._faults: list[tuple[str, float]] = []
        self.retry_after_ms: int | None = None
        """When set, error answers carry ``retry-after-ms`` (as OpenAI's do): how long a client backs off."""
        self.hold: threading.Event | None = None
        """When set, a streamed reply waits for it after its first word (so the test sees the first word
        arrive while the rest of the reply is still unsent)."""
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail(self, status: int, times: int = 1) -> None:
        """The next ``times`` requests answer ``status`` with an OpenAI error body."""
        with self._lock:
            self._faults += [("status", float(status))] * times

    def stall(self, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests wait ``seconds`` before answering anything."""
        with self._lock:
            self._faults += [("stall", seconds)] * times

    def cut(self, after_words: int, times: int = 1) -> None:
        """The next ``times`` streamed replies break off (connection dropped) after ``after_words`` words."""
        with self._lock:
            self._faults += [("cut", float(after_words))] * times

    def _next_fault(self) -> tuple[str, float] | None:
        with self._lock:
            self.attempts += 1
            return self._faults.pop(0) if self._faults else None

    async def completions(self, request: Request) -> Response:
        fault = self._next_fault()
        presented = request.headers.get("authorization", "").removeprefix("Bearer ")
        if presented != self.api_key:
            # The real API quotes (masked) the key it was given; this quotes all of it, the worst case.
            body = error_body(401, f"Incorrect API key provided: {presented}.", "invalid_api_key")
            return JSONResponse(body, status_code=401)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return JSONResponse(
                error_body(400, "We could not parse the JSON body of your request."), status_code=400
            )
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return JSONResponse(
                error_body(400, "'messages' must be a non-empty array", "invalid_type"), status_code=400
            )
        if body.get("model") not in self.models:
            message = f"The model `{body.get('model')}` does not exist or you do not have access to it."
            return JSONResponse(error_body(404, message, "model_not_found"), status_code=404)
        self.requests.append(body)
        if fault and fault[0] == "stall":
            await asyncio.sleep(fault[1])
        elif fault and fault[0] == "status":
            status = int(fault[1])
            headers = {} if self.retry_after_ms is None else {"retry-after-ms": str(self.retry_after_ms)}
            return JSONResponse(
                error_body(status, f"simulated failure {status}"), status_code=status, headers=headers
            )
        text = self.reply(body["messages"])
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if body.get("stream"):
            cut = int(fault[1]) if fault and fault[0] == "cut" else None
            chunks = self._chunks(completion_id, created, body["model"], text, cut)
            return StreamingResponse(chunks, media_type="text/event-stream")
        usage = {
            "prompt_tokens": 10,
            "completion_tokens": len(text.split()),
            "total_tokens": 10 + len(text.split()),
        }
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    async def _chunks(
        self, completion_id: str, created: int, model: str, text: str, cut: int | None
    ) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            return f"data: {json.dumps(payload)}\n\n"

        yield chunk({"role": "assistant", "content": ""}, None)
        for index, word in enumerate(text.split(" ")):
            if index == cut:
                raise ConnectionAbortedError("simulated: the connection drops mid-reply")
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            yield chunk({"content": word if index == 0 else " " + word}, None)
            hold = self.hold
            if index == 0 and hold is not None:
                released = await asyncio.get_running_loop().run_in_executor(None, hold.wait, 30)
                if not released:
                    raise TimeoutError("simulated: the hold on the stream was never released")
        yield chunk({}, "stop")
        yield "data: [DONE]\n\n"

    def start(self) -> FakeOpenAI:
        app = Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._socket = sock
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._socket.close()
