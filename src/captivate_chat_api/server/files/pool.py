"""The extraction pool: long-lived worker processes, one file at a time each, killed past the time limit.

A worker that runs over time or dies (out of memory under its ``RLIMIT_AS``) is killed and replaced; the
file gets a 422 and the event loop never waited on it, so other conversations keep their latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from .extract import ALL_TYPES, Limits

log = logging.getLogger("captivate_chat_api.server.files")
_LINE_LIMIT = 1024 * 1024  # an answer's header line (the text follows it, counted)


@dataclass(frozen=True, slots=True)
class Extracted:
    """A file's detected type and its text, as the JSON string literal the worker wrote (spliced into the
    HTTP answer as is: the event loop never parses nor re-encodes a big text)."""

    type: str
    text_json: bytes

    @property
    def text(self) -> str:
        value: str = orjson.loads(self.text_json)
        return value


class ExtractionFailed(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, memory_bytes: int) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "captivate_chat_api.server.files.worker",
            str(memory_bytes),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=_LINE_LIMIT,
            start_new_session=True,  # its own process group: a kill takes tesseract too
        )
        return cls(process)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def call(self, job: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps(job) + "\n").encode())
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise EOFError("the extraction worker exited")
        answer: dict[str, Any] = orjson.loads(line)
        size = int(answer.get("text_bytes", 0))
        try:
            answer["text_json"] = await self.process.stdout.readexactly(size) if size else b""
        except asyncio.IncompleteReadError:
            raise EOFError("the extraction worker exited") from None
        return answer

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await self.process.wait()


class ExtractionPool:
    def __init__(
        self,
        workers: int = 2,
        *,
        timeout: float = 30.0,
        memory_bytes: int = 1024 * 1024 * 1024,
        limits: Limits | None = None,
        allowed: tuple[str, ...] = ALL_TYPES,
    ) -> None:
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self.limits = limits or Limits()
        self.allowed = allowed
        self._slots = asyncio.Semaphore(max(1, workers))
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()

    async def extract(self, path: Path, filename: str) -> Extracted:
        """The file's type and text; :class:`ExtractionFailed` with a status when it cannot be read."""
        job = {
            "path": str(path),
            "filename": filename,
            "limits": asdict(self.limits),
            "allowed": list(self.allowed),
        }
        async with self._slots:
            worker = await self._take()
            self._busy.add(worker)
            try:
                answer = await asyncio.wait_for(worker.call(job), self.timeout)
            except TimeoutError:
                await worker.kill()
                raise ExtractionFailed(422, f"reading the file took longer than {self.timeout:g} s") from None
            except (EOFError, ConnectionError, ValueError):
                await worker.kill()
                raise ExtractionFailed(
                    422, "the file needs more memory or time to read than a file may use"
                ) from None
            except BaseException:  # cancelled mid-call: its answer would reach the next job, so it goes
                await worker.kill()
                raise
            finally:
                self._busy.discard(worker)
            self._idle.append(worker)
        if not answer.get("ok"):
            raise ExtractionFailed(
                int(answer.get("status", 422)), str(answer.get("error", "the file could not be read"))
            )
        return Extracted(str(answer["type"]), answer["text_json"])

    async def _take(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                return worker
        return await _Worker.start(self.memory_bytes)

    async def close(self) -> None:
        for worker in [*self._idle, *self._busy]:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
            await worker.kill()
        self._idle.clear()
