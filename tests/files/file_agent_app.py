"""An AI agent written with PyPI ``captivate-ai-api``: it reads ``get_files()`` and downloads each file's URL
with ``download_file_to_memory`` (as a customer's agent would), then says what it got."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import warnings
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

with warnings.catch_warnings():  # captivate-ai-api 0.6.3 uses pydantic's deprecated class Config
    warnings.simplefilter("ignore", DeprecationWarning)
    from captivate_ai_api.Captivate import Captivate, TextMessageModel


class FileAgent:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        app = FastAPI()

        @app.post("/agent")
        async def agent(request: Request) -> dict[str, Any]:
            data = json.loads(await request.body())
            captivate = Captivate.create(data)
            report = {"user_input": captivate.get_user_input(), "files": []}
            for info in captivate.get_files() or []:
                try:
                    content = (await captivate.download_file_to_memory(info)).getvalue()
                    got: dict[str, Any] = {
                        "bytes": len(content),
                        "sha256": hashlib.sha256(content).hexdigest(),
                    }
                except Exception as exc:  # noqa: BLE001  reported to the test, which fails on it
                    got = {"download_error": repr(exc)}
                report["files"].append(
                    {
                        "filename": info.get("filename"),
                        "text": info.get("textContent", {}).get("text", ""),
                        **got,
                    }
                )
            self.seen.append(report)
            captivate.set_response([TextMessageModel(text=f"agent saw {len(report['files'])} file(s)")])
            return captivate.get_response()  # type: ignore[no-any-return]

        self.app = app

    def start(self) -> FileAgent:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_config=None, lifespan="off"))
        self._socket = sock
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the file agent did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/agent"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
