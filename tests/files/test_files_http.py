"""The file endpoints of a real gateway: hostile files, signed URLs (tampered, expired, another file's),
cross-tenant attempts (0 successes), hard delete removing the objects, 413, 501 without the extra."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import samples

from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient, tls

ENV = {
    "CAPTIVATE_FILES_EXTRACT_TIMEOUT": "20",  # roomy: workers run at idle priority on a loaded machine
    "CAPTIVATE_FILES_MAX_BYTES": str(4 * 1024 * 1024),
    "CAPTIVATE_FILES_UPLOADS_PER_MINUTE_PER_KEY": "600",
}


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return [new_key(), new_key()]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, keys: list[str]) -> Iterator[GatewayProcess]:
    db = tmp_path_factory.mktemp("files-http") / "gateway.db"
    process = GatewayProcess(db, keys, env=ENV).start()
    yield process
    process.stop()


async def upload(
    gateway: GatewayProcess, path: str | None, name: str, data: bytes, **fields: str
) -> httpx.Response:
    form = {"includeMetadata": "true", "storage": "true", **fields}
    if path is not None:
        form["path"] = path
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=60, verify=tls()) as http:
        return await http.post(
            "/api/file-to-text", files={"file": (name, data, "application/octet-stream")}, data=form
        )


async def conversation(gateway: GatewayProcess, key: str, user: str = "u1") -> str:
    async with WireClient(gateway.http_url, gateway.ws_url, key) as client:
        return await client.start(user)


async def stored(gateway: GatewayProcess, key: str, conversation_id: str) -> dict[str, Any]:
    response = await upload(gateway, f"{key}/{conversation_id}", "notes.txt", samples.txt())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


HOSTILE = {
    "zip bomb": ("bomb.docx", samples.zip_bomb_docx, 422, "zip bomb"),
    "100,000 pages": ("pages.pdf", samples.many_pages_pdf, 422, "100000 pages"),
    "bomb image": ("bomb.png", samples.bomb_png, 422, "decompression bomb"),
    "truncated": ("report.pdf", samples.truncated_pdf, 422, "damaged or truncated"),
    "wrong extension": ("report.pdf", samples.mislabelled_exe, 415, "unsupported file type"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_a_hostile_file_gets_a_clear_4xx(gateway: GatewayProcess, keys: list[str], case: str) -> None:
    name, make, status, words = HOSTILE[case]
    conversation_id = await conversation(gateway, keys[0])
    response = await upload(gateway, f"{keys[0]}/{conversation_id}", name, make())
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and words in body["error"]


def test_other_conversations_keep_their_latency_while_a_slow_file_is_read(
    keys: list[str], tmp_path: Path
) -> None:
    noise = tmp_path / "noise.png"
    noise.write_bytes(samples.noise_png())  # OCR of noise runs past the 1.5 s limit set here
    env = {
        **ENV,
        "CAPTIVATE_FILES_EXTRACT_TIMEOUT": "1.5",
        "CAPTIVATE_FILES_MAX_BYTES": str(16 * 1024 * 1024),
        "CAPTIVATE_RATE_PER_SOCKET": "0",
        "CAPTIVATE_RATE_PER_KEY": "0",
    }
    slow_gateway = GatewayProcess(tmp_path / "gw.db", keys, env=env).start()
    try:
        asyncio.run(_latency_during_extraction(slow_gateway, keys, noise))
    finally:
        slow_gateway.stop()


async def _latency_during_extraction(gateway: GatewayProcess, keys: list[str], noise: Path) -> None:
    conversation_id = await conversation(gateway, keys[0])
    async with WireClient(gateway.http_url, gateway.ws_url, keys[1]) as chat:
        other = await chat.start("latency")

        async def round_trip() -> float:
            started = time.perf_counter()
            await chat.say(other, "ping")
            await chat.expect("bot_message")
            return time.perf_counter() - started

        idle = min([await round_trip() for _ in range(5)])
        slow = asyncio.create_task(
            upload(gateway, f"{keys[0]}/{conversation_id}", "noise.png", noise.read_bytes())
        )
        await asyncio.sleep(0.3)
        busy = []
        while not slow.done():
            busy.append(await round_trip())
        response = await slow
    assert response.status_code == 422 and "longer than 1.5 s" in response.json()["error"], response.text
    assert busy, "the slow upload ended before any round trip ran"
    assert sorted(busy)[len(busy) // 2] < max(0.25, idle * 10), (idle, busy)


async def test_an_oversize_upload_is_413_before_the_body_is_read(
    gateway: GatewayProcess, keys: list[str]
) -> None:
    conversation_id = await conversation(gateway, keys[0])
    big = b"a" * (5 * 1024 * 1024)
    response = await upload(gateway, f"{keys[0]}/{conversation_id}", "big.txt", big)
    assert response.status_code == 413 and response.json()["success"] is False

    async def chunked() -> Any:  # no Content-Length: cut while streaming
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
        for _ in range(6):
            yield b"x" * (1024 * 1024)
        yield b"\r\n--b--\r\n"

    async with httpx.AsyncClient(verify=tls(), base_url=gateway.http_url, timeout=30) as http:
        response = await http.post(
            "/api/file-to-text",
            content=chunked(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
    assert response.status_code == 413
    assert (await stored(gateway, keys[0], conversation_id))["success"] is True  # still serving


def sign(secret: str, key: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"{key}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


async def test_signed_urls_refuse_tampering_and_expiry(gateway: GatewayProcess, keys: list[str]) -> None:
    conversation_id = await conversation(gateway, keys[0])
    first, second = (
        await stored(gateway, keys[0], conversation_id),
        await stored(gateway, keys[0], conversation_id),
    )
    url = urlsplit(first["presignedUrl"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    with sqlite3.connect(str(gateway.database)) as db:
        secret = db.execute(
            "SELECT value FROM deployment_secrets WHERE name = 'file_url_signing'"
        ).fetchone()[0]
    assert secret not in gateway.logs()
    past = int(time.time()) - 10
    base = f"{gateway.http_url}{url.path}"
    other_path = urlsplit(second["presignedUrl"]).path
    attempts = {
        "tampered signature": f"{base}?expires={query['expires']}&sig={query['sig'][:-2]}AA",
        "longer expiry": f"{base}?expires={int(query['expires']) + 3600}&sig={query['sig']}",
        "expired (validly signed)": f"{base}?expires={past}&sig={sign(secret, first['fileKey'], past)}",
        "another file's signature": f"{gateway.http_url}{other_path}?expires={query['expires']}&sig={query['sig']}",
        "no signature": base,
    }
    async with httpx.AsyncClient(verify=tls(), timeout=10) as http:
        for name, address in attempts.items():
            response = await http.get(address)
            assert response.status_code == 403, (name, response.status_code)
        good = await http.get(first["presignedUrl"])
    assert good.status_code == 200 and good.content == samples.txt()
    assert good.headers["content-disposition"].startswith("attachment;")
    assert good.headers["x-content-type-options"] == "nosniff"


async def test_html_is_never_served_inline(gateway: GatewayProcess, keys: list[str]) -> None:
    conversation_id = await conversation(gateway, keys[0])
    response = await upload(gateway, f"{keys[0]}/{conversation_id}", "page.html", samples.html())
    assert response.status_code == 200 and samples.WORD in response.json()["text"]
    assert "alert" not in response.json()["text"]
    async with httpx.AsyncClient(verify=tls(), timeout=10) as http:
        got = await http.get(response.json()["presignedUrl"])
    assert got.headers["content-disposition"].startswith("attachment;")
    assert (
        got.headers["x-content-type-options"] == "nosniff"
        and "sandbox" in got.headers["content-security-policy"]
    )


async def test_cross_tenant_attempts_all_fail(gateway: GatewayProcess, keys: list[str]) -> None:
    mine = await conversation(gateway, keys[0])
    theirs = await conversation(gateway, keys[1])
    file = await stored(gateway, keys[0], mine)
    assert keys[0] not in file["fileKey"]
    successes = 0
    for path in (f"{keys[1]}/{mine}", f"{keys[0]}/{theirs}", f"{new_key()}/{mine}", f"{keys[0]}/nope", None):
        response = await upload(gateway, path, "notes.txt", samples.txt())
        successes += response.status_code == 200
        assert response.status_code == 401
    channel_prefix = file["fileKey"].split("/")[0]
    async with httpx.AsyncClient(verify=tls(), base_url=gateway.http_url, timeout=10) as http:
        for _ in range(20):  # guessing keys (even with the right channel part) presigns nothing
            guess = f"{channel_prefix}/{secrets.token_urlsafe(24)}"
            response = await http.post("/api/presigned-url", json={"fileKey": guess, "expiresIn": 60})
            successes += response.status_code == 200
        theirs_file = await stored(gateway, keys[1], theirs)
        their_path = urlsplit(theirs_file["presignedUrl"]).path
        my_query = urlsplit(file["presignedUrl"]).query
        response = await http.get(f"{their_path}?{my_query}")  # my signature on their file
        successes += response.status_code == 200
    assert successes == 0


async def test_presign_clamps_and_extends_a_ttl(gateway: GatewayProcess, keys: list[str]) -> None:
    conversation_id = await conversation(gateway, keys[0])
    response = await upload(gateway, f"{keys[0]}/{conversation_id}", "notes.txt", samples.txt(), ttlDays="1")
    key = response.json()["fileKey"]
    with sqlite3.connect(str(gateway.database)) as db:
        db.execute("UPDATE files SET expires_at = ? WHERE file_key = ?", (time.time() + 60, key))
    async with httpx.AsyncClient(verify=tls(), base_url=gateway.http_url, timeout=10) as http:
        body = (await http.post("/api/presigned-url", json={"fileKey": key, "expiresIn": 10**9})).json()
    assert body["success"] and body["expiresIn"] == 7 * 86400  # clamped to files_presign_max_seconds
    with sqlite3.connect(str(gateway.database)) as db:
        (expires,) = db.execute("SELECT expires_at FROM files WHERE file_key = ?", (key,)).fetchone()
    assert abs(expires - (time.time() + 86400)) < 120  # pushed back by its TTL (1 day)


@pytest.mark.parametrize("scope", ["conversation", "user"])
async def test_hard_delete_removes_the_files(gateway: GatewayProcess, keys: list[str], scope: str) -> None:
    user = f"deleter-{scope}"
    async with WireClient(gateway.http_url, gateway.ws_url, keys[0]) as client:
        conversation_id = await client.start(user)
        kept_id = await client.start(user)
        file = await stored(gateway, keys[0], conversation_id)
        soft = await stored(gateway, keys[0], kept_id)
        await client.ok("delete_conversation", {"conversation_id": kept_id, "softdelete": True})
        if scope == "conversation":
            await client.ok("delete_conversation", {"conversation_id": conversation_id, "softdelete": False})
        else:
            await client.ok("delete_user_conversations", {"userId": user, "softdelete": False})
    files_dir = Path(gateway.database).parent / "files"
    assert not (files_dir / file["fileKey"]).exists()
    async with httpx.AsyncClient(verify=tls(), base_url=gateway.http_url, timeout=10) as http:
        assert (await http.get(file["presignedUrl"])).status_code == 410
        assert (await http.post("/api/presigned-url", json={"fileKey": file["fileKey"]})).status_code == 404
        if scope == "conversation":  # a soft delete keeps the files (the conversation can be restored)
            assert (files_dir / soft["fileKey"]).is_file()
            assert (await http.get(soft["presignedUrl"])).status_code == 200


async def test_the_upload_path_never_reaches_the_log(gateway: GatewayProcess, keys: list[str]) -> None:
    conversation_id = await conversation(gateway, keys[0])
    file = await stored(gateway, keys[0], conversation_id)
    await upload(gateway, f"{keys[0]}/{conversation_id}", "bomb.png", samples.bomb_png())
    async with httpx.AsyncClient(verify=tls(), timeout=10) as http:
        assert (await http.get(file["presignedUrl"])).status_code == 200
    await asyncio.sleep(0.2)  # the access log line is written after the response
    logs = gateway.logs()
    assert "/api/file-to-text" in logs and all(key not in logs for key in keys)
    assert "GET /files/" in logs and file["fileKey"].split("/")[1] not in logs  # the key is a capability


def test_without_the_files_extra_the_endpoints_say_501(tmp_path: Path) -> None:
    """A gateway without the extra's modules (hidden from it) answers 501 naming the extra."""
    hide = tmp_path / "hide"
    hide.mkdir()
    # None in sys.modules: `import pypdf` fails and find_spec says it is not there, as when not installed
    (hide / "sitecustomize.py").write_text(
        "import sys\nsys.modules['pypdf'] = sys.modules['pytesseract'] = None\n"
    )
    key = new_key()
    process = GatewayProcess(tmp_path / "gw.db", [key], env={"PYTHONPATH": str(hide)}).start()
    try:
        with httpx.Client(verify=tls(), base_url=process.http_url, timeout=10) as http:
            upload_reply = http.post("/api/file-to-text", files={"file": ("a.txt", b"hi")})
            presign_reply = http.post("/api/presigned-url", json={"fileKey": "x"})
    finally:
        process.stop()
    for response in (upload_reply, presign_reply):
        assert response.status_code == 501
        assert "captivate-chat-api[files]" in response.json()["error"]


async def test_a_message_with_too_many_files_is_refused(gateway: GatewayProcess, keys: list[str]) -> None:
    one = {"filename": "a.txt", "type": "text/plain", "textContent": {"type": "file_content", "text": "a"}}
    async with WireClient(gateway.http_url, gateway.ws_url, keys[0]) as client:
        conversation_id = await client.start("many-files")
        payload = {"conversation_id": conversation_id, "type": "message_create"}
        response = await client.post(
            "user_message", {**payload, "content": {"type": "text", "text": "x", "files": [one] * 11}}
        )
        assert response.status_code == 400 and "at most 10 files" in response.json()["error_desc"]
        ok = await client.ok(
            "user_message", {**payload, "content": {"type": "text", "text": "x", "files": [one] * 10}}
        )
        assert ok["status"] == "success"


def test_a_crash_mid_upload_leaves_no_half_file_visible(keys: list[str], tmp_path: Path) -> None:
    """kill -9 while a file streams in: after a restart there is no object and no record of it."""
    import signal

    gateway = GatewayProcess(tmp_path / "gw.db", keys, env=ENV).start()
    conversation_id = asyncio.run(conversation(gateway, keys[0]))
    boundary = "crashboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n{keys[0]}/{conversation_id}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="half.txt"\r\n\r\n'
    ).encode()
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"POST /api/file-to-text HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n"
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
            + head
        )
        sock.sendall(b"x" * 2_000_000)  # two thirds of the declared body, then the gateway dies
        time.sleep(0.5)
        gateway.stop(signal.SIGKILL)
    restarted = GatewayProcess(tmp_path / "gw.db", keys, env=ENV).start()
    try:
        files_dir = tmp_path / "files"
        visible = [p for p in files_dir.rglob("*") if p.is_file() and ".partial" not in p.parts]
        assert visible == []
        with sqlite3.connect(str(tmp_path / "gw.db")) as db:
            assert db.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 0
        assert asyncio.run(stored(restarted, keys[0], conversation_id))["success"] is True
    finally:
        restarted.stop()


async def test_the_text_size_and_digest_arrive_exactly(gateway: GatewayProcess, keys: list[str]) -> None:
    """The upload streams to disk (hashed on the way) and the text is spliced into the answer as the worker
    encoded it: quotes, backslashes, control characters and non-ASCII text come back byte for byte."""
    conversation_id = await conversation(gateway, keys[0])
    text = 'Zanzibarite "quoted" back\\slash tab\there é ü 漢字 🙂\n' * 40_000  # ~2.6 MB: many batches
    data = text.encode()
    response = await upload(gateway, f"{keys[0]}/{conversation_id}", "exact.txt", data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"].strip() == text.strip()
    assert body["fileSize"] == len(data)
    assert body["metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert list(body)[:2] == ["success", "text"] and body["success"] is True


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "bnd") -> bytes:
    out = b""
    for name, filename, data in parts:
        named = f'; filename="{filename}"' if filename is not None else ""
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{named}\r\n\r\n'.encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


async def test_malformed_forms_are_400_and_leave_nothing(gateway: GatewayProcess, keys: list[str]) -> None:
    conversation_id = await conversation(gateway, keys[0])
    path = f"{keys[0]}/{conversation_id}".encode()
    scratch = Path(str(gateway.database)).parent / "files" / ".partial"
    cases = {
        "two files": (
            _multipart([("path", None, path), ("file", "a.txt", b"a"), ("file", "b.txt", b"b")]),
            "one file per upload",
        ),
        "no file part": (_multipart([("path", None, path), ("upload", "a.txt", b"a")]), "no `file` part"),
        "no boundary": (b"whatever", "no boundary"),
        "garbage": (b"--bnd\r\nnot a header line at all\r\n\r\n", "invalid multipart body"),
        "huge field": (_multipart([("path", None, b"p" * 100_000), ("file", "a.txt", b"a")]), "longer than"),
    }
    async with httpx.AsyncClient(verify=tls(), base_url=gateway.http_url, timeout=30) as http:
        for case, (body, error) in cases.items():
            content_type = "multipart/form-data" + ("" if case == "no boundary" else "; boundary=bnd")
            response = await http.post(
                "/api/file-to-text", content=body, headers={"content-type": content_type}
            )
            assert response.status_code == 400, (case, response.text)
            assert response.json()["success"] is False and error in response.json()["error"], case
    assert list(scratch.glob("*.part")) == []
    assert (await stored(gateway, keys[0], conversation_id))["success"] is True


def test_a_client_gone_mid_upload_leaves_no_scratch_file(gateway: GatewayProcess, keys: list[str]) -> None:
    conversation_id = asyncio.run(conversation(gateway, keys[0]))
    scratch = Path(str(gateway.database)).parent / "files" / ".partial"
    head = _multipart([("path", None, f"{keys[0]}/{conversation_id}".encode())])[: -len(b"--bnd--\r\n")]
    head += b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="gone.txt"\r\n\r\n'
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"POST /api/file-to-text HTTP/1.1\r\nHost: x\r\nContent-Length: 3500000\r\n"
            b"Content-Type: multipart/form-data; boundary=bnd\r\n\r\n" + head
        )
        sock.sendall(b"x" * 3_000_000)  # past a batch: the scratch file exists on disk
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while list(scratch.glob("*.part")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(scratch.glob("*.part")) == []
    assert asyncio.run(stored(gateway, keys[0], conversation_id))["success"] is True
