"""The SDK's file calls on the wire, byte for byte against the npm client 7.0.0's: both talk to one recorder
standing in for the Captivate cloud's file service (a third party: it answers in that service's format), and
what each sent is compared part by part, header by header; the file objects each builds are the same JSON."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from npm_runner import HERE, PREFIX, ensure_client

from captivate_chat_api import FileObject
from captivate_chat_api.client.files import FileInput, FileService
from harness.wire import tls

pytestmark = pytest.mark.interop

CONTENT = "plain text with Zanzibarite inside\n"
ANSWERS = {
    "/api/file-to-text": {
        "success": True,
        "text": "extracted",
        "fileKey": "ch_1/abc",
        "presignedUrl": "https://files.example/abc?sig=1",
        "expiresIn": 1900000000,
        "fileSize": 35,
        "processingTime": 12,
    },
    "/api/presigned-url": {
        "success": True,
        "presignedUrl": "https://files.example/k1?sig=2",
        "expiresIn": 600,
    },
}


class Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.requests.append(
            {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        )
        answer = dict(ANSWERS[self.path])
        if self.path == "/api/file-to-text" and b'name="storage"\r\n\r\nfalse' in body:
            answer = {"success": True, "text": "extracted"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Recorder.requests
    server.shutdown()
    server.server_close()


def parts(request: dict[str, Any]) -> list[tuple[str, str | None, str, bytes]]:
    """(name, filename as sent, content type, bytes) of each form part; ``attachment_<ms>`` made comparable."""
    raw = f"Content-Type: {request['headers']['content-type']}\r\n\r\n".encode() + request["body"]
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    out = []
    for part in message.iter_parts():
        disposition = part.get("content-disposition")
        filename = disposition.params.get("filename")
        filename = re.sub(r"^attachment_\d+$", "attachment_<ms>", filename) if filename else None
        out.append(
            (disposition.params["name"], filename, part.get_content_type(), part.get_payload(decode=True))
        )
    return out


def without_file(value: Any) -> Any:
    """npm's JSON of a FileInput, minus each file's ``file`` (a Blob: ``{}``, which the SDK leaves out)."""
    return {**value, "files": [{k: v for k, v in f.items() if k != "file"} for f in value["files"]]}


def fresh_ms(value: Any) -> Any:
    return json.loads(re.sub(r"attachment_\d+", "attachment_<ms>", json.dumps(value)))


def test_uploads_and_presign_match_the_npm_client_on_the_wire(
    recorder: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = recorder
    node = ensure_client()
    done = subprocess.run(
        [node, str(HERE / "npm_file_wire.cjs")],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "CCA_NPM_PREFIX": str(PREFIX), "CCA_FILES_URL": base, "CCA_CONTENT": CONTENT},
    )
    assert done.returncode == 0, done.stderr
    npm_result = json.loads(done.stdout.splitlines()[-1])
    npm_requests, seen[:] = list(seen), []

    async def same_calls_from_python() -> tuple[FileObject, FileObject, str]:
        async with httpx.AsyncClient(verify=tls()) as client:
            service = FileService(client, base)
            stored = await service.upload(
                CONTENT.encode(),
                filename='my "notes".txt',
                content_type="text/plain",
                path="KEY/CONV",
                ttl_days=7,
            )
            unstored = await service.upload(b"xyz", storage=False, url="https://example.com/x", ttl_days=5)
            url = await service.presign("k1", 600)
            return stored, unstored, url

    stored, unstored, url = asyncio.run(same_calls_from_python())
    ours = list(seen)

    assert [r["path"] for r in ours] == [r["path"] for r in npm_requests]
    for mine, theirs in zip(ours, npm_requests, strict=True):
        for header in ("x-api-key", "authorization", "cookie"):
            assert header not in mine["headers"] and header not in theirs["headers"]  # no credential, as npm
    for mine, theirs in zip(ours[:2], npm_requests[:2], strict=True):
        assert mine["headers"]["content-type"].startswith("multipart/form-data; boundary=")
        assert parts(mine) == parts(theirs)  # same fields, order, filenames (escaped alike), types and bytes
    assert ours[2]["body"] == npm_requests[2]["body"]  # the presign JSON, byte for byte
    assert (
        ours[2]["headers"]["content-type"] == npm_requests[2]["headers"]["content-type"] == "application/json"
    )

    # the JSON a message carries: the same keys in the same order
    assert json.dumps(FileInput([stored]).to_wire()) == json.dumps(without_file(npm_result["stored"]))
    assert fresh_ms(FileInput([unstored]).to_wire()) == fresh_ms(without_file(npm_result["unstored"]))
    assert url == npm_result["url"] == "https://files.example/k1?sig=2"
