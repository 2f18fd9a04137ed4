"""The file service over a real store (SQLite and PostgreSQL) and real local storage, with an injected
clock: TTL expiry and its extension by a presign, the sweeper, purging a hard-deleted conversation's files,
and one signing secret per deployment."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import samples

from captivate_chat_api.server.files.records import FileRecord
from captivate_chat_api.server.files.service import DAY, FileError, FileService
from captivate_chat_api.server.files.signing import UrlSigner
from captivate_chat_api.server.files.storage import LocalStorage
from captivate_chat_api.server.settings import Settings
from captivate_chat_api.server.store import Channel, Store, store_from_url
from harness.gateway import POSTGRES_URL, postgres_schema


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'files.db'}"
        return
    for schema in postgres_schema("f"):
        yield f"{POSTGRES_URL}?schema={schema}"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = store_from_url(database_url)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def service(
    store: Store, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[FileService, Clock]]:
    clock = Clock()
    settings = Settings(
        database=database_url, files_storage=str(tmp_path / "objects"), files_extract_timeout=20
    )
    opened = await FileService.open(settings, store, clock=clock)
    yield opened, clock
    await opened.close()


async def channel_with_conversation(store: Store, name: str) -> tuple[Channel, str]:
    channel = await store.create_channel_with_key(name, f"hash-{uuid.uuid4().hex}", "cck_x")
    conversation_id = str(uuid.uuid4())
    await store.create_conversation(channel.id, conversation_id, "user-1", {}, {}, {})
    return channel, conversation_id


async def put(
    service: FileService, channel: Channel, conversation_id: str, ttl_days: int | None
) -> FileRecord:
    data = samples.txt()
    scratch = service.scratch_file()
    scratch.write_bytes(data)
    done = await service.upload(
        channel,
        conversation_id,
        scratch,
        filename="notes.txt",
        size=len(data),
        sha256="0" * 64,
        storage=True,
        ttl_days=ttl_days,
    )
    assert done.record is not None and samples.WORD in done.text
    assert not scratch.exists()
    return done.record


async def test_ttl_expiry_sweep_and_extension(service: tuple[FileService, Clock], store: Store) -> None:
    files, clock = service
    channel, conversation_id = await channel_with_conversation(store, "ttl")
    storage = files.storage
    assert isinstance(storage, LocalStorage)
    short = await put(files, channel, conversation_id, ttl_days=1)
    forever = await put(files, channel, conversation_id, ttl_days=None)
    assert short.expires_at == clock.now + DAY and forever.expires_at is None

    clock.now += DAY - 3600  # an hour before expiry, a presign pushes it back by the TTL
    url, expires = await files.presign(short.file_key, 7200)
    assert expires == int(clock.now) + 7200 and "/files/" in url
    record = await files.records.get(short.file_key)
    assert record is not None and record.expires_at == clock.now + DAY

    clock.now += DAY - 60  # a URL never outlives its file
    _, expires = await files.presign(short.file_key, 7 * DAY)
    assert expires == int(clock.now) + DAY

    clock.now += DAY + 1
    assert await files.sweep() == 1
    assert await files.records.get(short.file_key) is None
    assert not storage.path_of(short.file_key).exists()
    assert storage.path_of(forever.file_key).is_file()
    with pytest.raises(FileError) as refused:
        await files.presign(short.file_key, 60)
    assert refused.value.status == 404


async def test_a_hard_deleted_conversation_loses_its_files(
    service: tuple[FileService, Clock], store: Store
) -> None:
    files, _ = service
    channel, conversation_id = await channel_with_conversation(store, "delete")
    other_id = str(uuid.uuid4())
    await store.create_conversation(channel.id, other_id, "user-2", {}, {}, {})
    gone = await put(files, channel, conversation_id, ttl_days=None)
    kept = await put(files, channel, other_id, ttl_days=None)
    assert await store.delete_conversation(channel.id, conversation_id, soft=False)
    assert await files.purge_orphans() == 1
    assert await files.records.get(gone.file_key) is None
    assert await files.records.get(kept.file_key) is not None


async def test_quota_and_signatures(
    service: tuple[FileService, Clock], store: Store, database_url: str, tmp_path: Path
) -> None:
    files, clock = service
    channel, conversation_id = await channel_with_conversation(store, "quota")
    record = await put(files, channel, conversation_id, ttl_days=None)
    assert await files.records.channel_bytes(channel.id) == record.size

    quota = Settings(
        database=database_url, files_storage=str(tmp_path / "q"), files_quota_bytes_per_channel=record.size
    )
    limited = await FileService.open(quota, store, clock=clock)
    try:
        with pytest.raises(FileError) as refused:
            await put(limited, channel, conversation_id, ttl_days=None)
        assert refused.value.status == 507
        assert limited.storage.signer.signature("k", 1) == files.storage.signer.signature("k", 1)  # type: ignore[attr-defined]
    finally:
        await limited.close()
    signer = UrlSigner("s")
    good = signer.signature("c/key", 100)
    assert signer.valid("c/key", "100", good, now=99.0)
    assert not signer.valid("c/key", "100", good, now=100.0)
    assert not signer.valid("c/key2", "100", good, now=1.0)
    assert not signer.valid("c/key", "101", good, now=1.0)
    assert not signer.valid("c/key", "abc", good, now=1.0)


async def test_a_killed_worker_is_replaced(
    service: tuple[FileService, Clock], store: Store, tmp_path: Path
) -> None:
    files, _ = service
    files.pool.timeout = 0.5
    noise = _write(tmp_path / "noise.png", samples.noise_png())  # OCR of noise runs past the 0.5 s limit
    with pytest.raises(Exception) as slow:
        await files.pool.extract(noise, "noise.png")
    assert getattr(slow.value, "status", None) == 422
    files.pool.timeout = 20
    found = await files.pool.extract(_write(tmp_path / "n.txt", samples.txt()), "n.txt")
    assert samples.WORD in found.text


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_limits_types_rate_and_leftovers(
    service: tuple[FileService, Clock], store: Store, tmp_path: Path
) -> None:
    import os

    from captivate_chat_api.server.files.extract import PDF
    from captivate_chat_api.server.files.pool import ExtractionFailed, ExtractionPool

    files, _ = service
    only_pdf = ExtractionPool(1, allowed=(PDF,))
    try:
        with pytest.raises(ExtractionFailed) as refused:
            await only_pdf.extract(_write(tmp_path / "n.txt", samples.txt()), "n.txt")
        assert refused.value.status == 415 and "not allowed" in refused.value.message
    finally:
        await only_pdf.close()

    channel, _ = await channel_with_conversation(store, "rate")
    allowed = 0
    with pytest.raises(FileError) as limited:
        for _ in range(1000):
            files.check_rate(channel)
            allowed += 1
    assert limited.value.status == 429 and allowed == 60  # files_uploads_per_minute_per_key's burst

    stale, fresh = files.scratch_file(), files.scratch_file()
    stale.write_bytes(b"half an upload")
    fresh.write_bytes(b"an upload in progress")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    await files.sweep()
    assert not stale.exists() and fresh.exists()


async def test_agents_get_fresh_urls_for_their_channels_files_only(
    service: tuple[FileService, Clock], store: Store
) -> None:
    files, clock = service
    mine, conversation_id = await channel_with_conversation(store, "mine")
    theirs, their_conversation = await channel_with_conversation(store, "theirs")
    own = await put(files, mine, conversation_id, ttl_days=None)
    foreign = await put(files, theirs, their_conversation, ttl_days=None)
    stale = {"presignedUrl": "http://stale", "expiresIn": 1}
    given = [
        {"filename": "a", "url": "http://stale", "storage": {"fileKey": own.file_key, **stale}},
        {"filename": "b", "url": "http://stale", "storage": {"fileKey": foreign.file_key, **stale}},
        {"filename": "c", "url": "https://example.org/c.txt", "storage": {"fileKey": own.file_key, **stale}},
        {"filename": "d", "url": "https://example.org/d.txt"},
    ]
    fresh = await files.fresh_urls(mine.id, given)
    assert "/files/" in fresh[0]["url"] and fresh[0]["storage"]["presignedUrl"] == fresh[0]["url"]
    assert fresh[0]["storage"]["expiresIn"] == int(clock.now) + 7200
    assert fresh[1:] == given[1:]  # another channel's key, and the developer's own URLs, are left alone


async def test_storage_false_keeps_nothing(service: tuple[FileService, Clock], store: Store) -> None:
    files, _ = service
    channel, conversation_id = await channel_with_conversation(store, "nostore")
    scratch = files.scratch_file()
    scratch.write_bytes(samples.csv())
    done = await files.upload(
        channel,
        conversation_id,
        scratch,
        filename="d.csv",
        size=len(samples.csv()),
        sha256="0" * 64,
        storage=False,
        ttl_days=None,
    )
    assert samples.WORD in done.text and done.record is None and not scratch.exists()
    assert await files.records.channel_bytes(channel.id) == 0
    assert [p for p in files.storage.root.rglob("*") if p.is_file()] == []  # type: ignore[attr-defined]


def test_extraction_workers_leave_a_core_to_the_chats_by_default() -> None:
    import os

    from captivate_chat_api.server.files.service import extract_workers

    assert extract_workers(3) == 3
    assert extract_workers(0) == max(1, (os.cpu_count() or 2) - 1)
    assert Settings().files_extract_workers == 0
