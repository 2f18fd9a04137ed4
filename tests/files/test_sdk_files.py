"""The Python SDK's file manager (async and sync) against a real gateway's file service: uploads from a path,
bytes and a file object, with progress; the files in a message and its transcript; secure URLs that
download; the time to live; near-expiry URLs refreshed by ``get_transcript`` and pushed back; refusals."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from samples import WORD, csv, docx, pdf, png, txt

from captivate_chat_api import (
    AuthenticationError,
    CaptivateChatAPI,
    FileInput,
    FileObject,
    PayloadTooLargeError,
    UploadProgress,
)
from captivate_chat_api import sync as blocking
from harness.gateway import GatewayProcess, new_key
from harness.wire import tls


@pytest.fixture
def user_id() -> str:
    return f"files-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def api(gateway: GatewayProcess, api_key: str) -> AsyncIterator[CaptivateChatAPI]:
    async with CaptivateChatAPI(api_key, base_url=gateway.http_url) as client:
        yield client


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample files, made once for the module (the tests only read them)."""
    folder = tmp_path_factory.mktemp("samples")
    (folder / "report.pdf").write_bytes(pdf())
    (folder / "letter.docx").write_bytes(docx())
    (folder / "scan.png").write_bytes(png())
    return folder


async def download(url: str) -> bytes:
    async with httpx.AsyncClient(verify=tls()) as client:  # no headers: the URL alone must be enough
        response = await client.get(url)
    assert response.status_code == 200, response.text
    return response.content


def ttl_of(gateway: GatewayProcess, file_key: str) -> int | None:
    with sqlite3.connect(str(gateway.database)) as db:
        row = db.execute("SELECT ttl_days FROM files WHERE file_key = ?", (file_key,)).fetchone()
    assert row is not None, "the upload left no record"
    return row[0]  # type: ignore[no-any-return]


async def test_upload_send_transcript_and_download(
    api: CaptivateChatAPI, gateway: GatewayProcess, user_id: str, sample_dir: Path
) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    seen: list[UploadProgress] = []
    fi = await conv.file_manager.create(sample_dir / "report.pdf", on_progress=seen.append)
    assert isinstance(fi, FileInput) and len(fi) == 1
    assert WORD in fi.text_content and fi.filename == "report.pdf" and fi.file_type == "application/pdf"
    size = (sample_dir / "report.pdf").stat().st_size
    assert seen[0].sent == 0 and seen[-1] == UploadProgress("report.pdf", size, size)
    stored = fi[0].storage
    assert stored is not None and stored.file_key and stored.file_size == size
    assert stored.expires_in is not None and stored.expires_in > time.time() + 60
    assert api.api_key not in stored.file_key
    assert await download(str(stored.presigned_url)) == (sample_dir / "report.pdf").read_bytes()
    assert ttl_of(gateway, stored.file_key) is None  # no time to live set yet

    sent = await conv.send_message({"type": "text", "text": "here is the report", "files": fi})
    assert sent.message_id
    (entry,) = [e for e in await conv.get_transcript() if e.sender == "user"]
    (attachment,) = entry.attachments
    assert attachment.filename == "report.pdf" and WORD in attachment.text_content
    assert attachment.storage is not None and attachment.storage.file_key == stored.file_key
    assert entry.content["text"] == "here is the report"


async def test_bytes_file_objects_several_files_and_the_ttl(
    api: CaptivateChatAPI, gateway: GatewayProcess, user_id: str, sample_dir: Path
) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    await conv.set_time_to_live(7)
    one = await conv.file_manager.create_file(txt(), filename="notes.txt")
    assert isinstance(one, FileObject) and WORD in one.text_content and one.type == "text/plain"
    assert (
        one.storage is not None and ttl_of(gateway, one.storage.file_key) == 7
    )  # ttlDays went with the upload
    with (sample_dir / "letter.docx").open("rb") as handle:
        from_handle = await conv.file_manager.create_file(handle, content_type="application/octet-stream")
    assert from_handle.filename == "letter.docx" and WORD in from_handle.text_content
    several = await conv.file_manager.create_multiple(
        [sample_dir / "scan.png", csv(), sample_dir / "report.pdf"]
    )
    assert [f.filename.split("_")[0] for f in several] == ["scan.png", "attachment", "report.pdf"]
    assert all(WORD.lower() in f.text_content.lower() for f in several)  # the PNG's word read by OCR
    # every npm form of content.files: the wrapper, a list, one object
    for files in (several, [one, from_handle], one):
        await conv.send_message({"type": "text", "text": "", "files": files})
    entries = [e for e in await conv.get_transcript() if e.sender == "user" and e.files]
    assert [len(e.attachments) for e in entries] == [3, 2, 1]
    assert [a.filename for a in entries[1].attachments] == ["notes.txt", "letter.docx"]


async def test_without_storage_the_url_is_the_developers(api: CaptivateChatAPI, user_id: str) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    fi = await conv.file_manager.create(
        csv(), filename="data.csv", storage=False, url="https://example.com/data.csv"
    )
    assert fi[0].storage is None and fi[0].url == "https://example.com/data.csv" and WORD in fi.text_content
    assert await fi.refresh_secure_url() is None
    with pytest.raises(ValueError):
        await conv.file_manager.create(csv(), storage=False)
    with pytest.raises(ValueError):
        await conv.file_manager.create_multiple([csv(), txt()], storage=False, urls=["https://example.com/1"])


async def test_secure_urls_refresh_and_download(api: CaptivateChatAPI, user_id: str) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    fi = await conv.file_manager.create(txt(), filename="notes.txt")
    assert fi[0].storage is not None
    key, first_url = fi[0].storage.file_key, fi[0].storage.presigned_url
    fresh = await api.get_secure_file_url(key, 600)
    assert fresh and await download(fresh) == txt()
    refreshed = await fi.refresh_secure_url(120)
    assert refreshed and refreshed == fi[0].storage.presigned_url and refreshed != first_url
    assert fi[0].storage.expires_in is not None and fi[0].storage.expires_in < time.time() + 200
    assert await download(refreshed) == txt()


async def test_get_transcript_refreshes_urls_about_to_expire_and_pushes_them_back(
    api: CaptivateChatAPI, user_id: str
) -> None:
    conv = await api.create_conversation(user_id, mode="user-first")
    near, later = (
        await conv.file_manager.create_file(txt(), filename="near.txt"),
        await conv.file_manager.create_file(csv(), filename="later.csv"),
    )
    assert near.storage is not None and later.storage is not None
    old_url, later_url = near.storage.presigned_url, later.storage.presigned_url
    near.storage.expires_in = time.time() + 60  # within the 300 s window: refreshed
    await conv.send_message({"type": "text", "text": "two files", "files": [near, later]})

    before = time.time()
    (entry,) = [e for e in await conv.get_transcript() if e.sender == "user"]
    first, second = entry.attachments
    assert first.storage is not None and second.storage is not None
    assert first.storage.expires_in is not None  # refreshed: a new expiry, two hours from now
    assert before + 7200 - 5 <= first.storage.expires_in <= time.time() + 7200
    assert first.storage.presigned_url and old_url  # (the same URL when signed within the same second)
    assert second.storage.presigned_url == later_url  # far from expiry: left alone
    assert await download(str(first.storage.presigned_url)) == txt()
    # the refreshed URL was pushed back with edit_message: the stored message has it now
    (stored,) = [e for e in await conv.get_transcript() if e.sender == "user"]
    assert stored.edited_at is not None
    assert stored.attachments[0].storage is not None
    assert stored.attachments[0].storage.presigned_url == first.storage.presigned_url
    assert stored.attachments[0].storage.expires_in == first.storage.expires_in


async def test_refusals_are_typed_errors(
    api: CaptivateChatAPI, gateway: GatewayProcess, tenant_keys: list[str], user_id: str
) -> None:
    with pytest.raises(AuthenticationError):  # the static manager sends no path: the gateway wants one
        await api.file_manager.create(txt(), filename="a.txt")
    async with CaptivateChatAPI(tenant_keys[1], base_url=gateway.http_url) as other:
        foreign = await other.create_conversation(user_id, mode="user-first")
    conv = await api.create_conversation(user_id, mode="user-first")
    conv.conversation_id, real = (
        foreign.conversation_id,
        conv.conversation_id,
    )  # a conversation of another key
    conv._file_manager = None
    with pytest.raises(AuthenticationError):
        await conv.file_manager.create(txt(), filename="a.txt")
    conv.conversation_id = real
    with pytest.raises(Exception, match="File|file|fileKey|not found|404|400"):
        await api.get_secure_file_url("no-such-file-key")


def test_the_cloud_is_the_default_file_service() -> None:
    assert CaptivateChatAPI("k").files.base == "https://file-to-text.prod.captivat.io"
    assert CaptivateChatAPI("k", base_url="http://127.0.0.1:9/x/").files.base == "http://127.0.0.1:9/x"


@pytest.fixture(scope="module")
def small_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    key = new_key()
    process = GatewayProcess(
        tmp_path_factory.mktemp("gw") / "g.db", [key], env={"CAPTIVATE_FILES_MAX_BYTES": str(64 * 1024)}
    ).start()
    yield process
    process.stop()


async def test_an_oversize_upload_is_payload_too_large_and_the_gateway_serves_on(
    small_gateway: GatewayProcess,
) -> None:
    async with CaptivateChatAPI(small_gateway.api_keys[0], base_url=small_gateway.http_url) as api:
        conv = await api.create_conversation("big-user", mode="user-first")
        with pytest.raises(PayloadTooLargeError):
            await conv.file_manager.create(b"x" * (200 * 1024), filename="big.txt")
        assert WORD in (await conv.file_manager.create(txt(), filename="ok.txt")).text_content


def test_the_sync_facade_uploads_sends_and_refreshes(
    gateway: GatewayProcess, api_key: str, sample_dir: Path
) -> None:
    with blocking.CaptivateChatAPI(api_key, base_url=gateway.http_url, timeout=60) as api:
        conv = api.create_conversation("sync-files", mode="user-first")
        conv.set_time_to_live(1)
        progress: list[int] = []
        fi = conv.file_manager.create(
            sample_dir / "report.pdf", on_progress=lambda p: progress.append(p.sent)
        )
        assert isinstance(fi, blocking.FileInput) and WORD in fi.text_content and progress[-1] > 0
        fo = conv.file_manager.create_file(io.BytesIO(txt()), filename="n.txt")
        both = conv.file_manager.create_multiple([csv(), txt()])
        assert len(both) == 2 and all(WORD in f.text_content for f in both)
        url = fi.refresh_secure_url()
        assert url and asyncio.run(download(url)) == (sample_dir / "report.pdf").read_bytes()
        assert fo.storage is not None
        assert api.get_secure_file_url(fo.storage.file_key, 300)
        conv.send_message({"type": "text", "text": "sync", "files": fi})
        (entry,) = [e for e in conv.get_transcript() if e.sender == "user"]
        assert entry.attachments[0].filename == "report.pdf"
        assert ttl_of(gateway, fi[0].storage.file_key) == 1  # type: ignore[union-attr]
