"""The file service: upload (stream to disk, extract in a worker, store, record), presign, sweep, purge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from platformdirs import user_data_dir

from ...protocol.files import DEFAULT_PRESIGN_SECONDS, TTL_DAYS
from ..limits import RateLimiter
from ..settings import Settings
from ..store import Channel, Store
from ..store.clock import utc_now
from .extract import ALL_TYPES, Limits
from .pool import ExtractionFailed, ExtractionPool
from .records import FileRecord, FileRecords, records_for
from .signing import UrlSigner
from .storage import LocalStorage, S3Storage, Storage

log = logging.getLogger("captivate_chat_api.server.files")
SIGNING_SECRET = "file_url_signing"  # nosec B105: the secret's name in the store, not a secret
DAY = 86400


def extract_workers(configured: int) -> int:
    """The configured count, or (0) one fewer than the CPU cores, at least one."""
    return configured if configured > 0 else max(1, (os.cpu_count() or 2) - 1)


class FileError(Exception):
    """An upload or presign refused: the status and the sentence the client shows (``error``)."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@dataclass(frozen=True, slots=True)
class Upload:
    text_json: bytes
    """The text as a JSON string literal (spliced into the answer as is)."""
    content_type: str
    size: int
    sha256: str
    processing_ms: int
    record: FileRecord | None = None
    presigned_url: str | None = None
    url_expires: int | None = None

    @property
    def text(self) -> str:
        value: str = orjson.loads(self.text_json)
        return value


def default_files_dir(database: str) -> Path:
    """``files/`` next to a SQLite database file; else in the user data folder."""
    for prefix in ("sqlite:///", "sqlite://"):
        if database.startswith(prefix):
            database = database[len(prefix) :]
            break
    if "://" not in database and database and database != ":memory:":
        return Path(database).expanduser().resolve().parent / "files"
    return Path(user_data_dir("captivate-chat", appauthor=False)) / "files"


def parse_ttl(value: str | None) -> int | None:
    """``ttlDays``: 1, 7, 30 or 90; anything else means no TTL (the npm client sends only those)."""
    try:
        days = int(value) if value is not None else None
    except ValueError:
        return None
    return days if days in TTL_DAYS else None


class FileService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        records: FileRecords,
        storage: Storage,
        pool: ExtractionPool,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.records = records
        self.storage = storage
        self.pool = pool
        self.clock = clock
        self.uploads = RateLimiter(
            settings.files_uploads_per_minute_per_key / 60.0,
            max(1.0, settings.files_uploads_per_minute_per_key),
        )
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, settings: Settings, store: Store, *, clock: Callable[[], float] = time.time
    ) -> FileService:
        records = records_for(store)
        secret = await records.secret(SIGNING_SECRET)
        target = settings.files_storage
        storage: Storage
        if target and target.startswith("s3://"):
            storage = S3Storage(target, default_files_dir(settings.database) / ".partial")
        else:
            root = Path(target).expanduser() if target else default_files_dir(settings.database)
            storage = LocalStorage(root, UrlSigner(secret), lambda: settings.base_url)
        allowed = tuple(settings.files_allowed_types) or ALL_TYPES
        pool = ExtractionPool(
            extract_workers(settings.files_extract_workers),
            timeout=settings.files_extract_timeout,
            memory_bytes=settings.files_extract_memory_mb * 1024 * 1024,
            limits=Limits(max_pages=settings.files_max_pages),
            allowed=allowed,
        )
        return cls(settings, store, records, storage, pool, clock=clock)

    def start_sweeper(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.pool.close()
        await self.storage.close()

    # upload

    def scratch_file(self) -> Path:
        folder = self.storage.scratch_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{secrets.token_hex(16)}.part"

    def check_rate(self, channel: Channel) -> None:
        wait = self.uploads.take(channel.id)
        if wait > 0:
            raise FileError(429, f"too many uploads for this API key: try again in {math.ceil(wait)} s")

    async def upload(
        self,
        channel: Channel,
        conversation_id: str,
        scratch: Path,
        *,
        filename: str,
        size: int,
        sha256: str,
        storage: bool,
        ttl_days: int | None,
    ) -> Upload:
        """Extract the text of the spooled file and, with ``storage``, keep it. ``scratch`` is consumed."""
        started = time.perf_counter()
        try:
            if size == 0:
                raise FileError(422, "the file is empty")
            quota = self.settings.files_quota_bytes_per_channel
            if storage and quota and await self.records.channel_bytes(channel.id) + size > quota:
                raise FileError(507, f"this channel's file storage quota ({quota} bytes) is used up")
            try:
                found = await self.pool.extract(scratch, filename)
            except ExtractionFailed as exc:
                raise FileError(exc.status, exc.message) from None
            elapsed = int((time.perf_counter() - started) * 1000)
            if not storage:
                return Upload(found.text_json, found.type, size, sha256, elapsed)
            now = self.clock()
            key = f"{channel.id}/{secrets.token_urlsafe(24)}"
            record = FileRecord(
                key,
                channel.id,
                conversation_id,
                filename or "file",
                found.type,
                size,
                sha256,
                ttl_days,
                now + ttl_days * DAY if ttl_days else None,
                utc_now(),
            )
            try:
                await self.storage.put(key, scratch, found.type)
            except OSError as exc:
                log.error("storing an upload failed: %s", type(exc).__name__)
                raise FileError(507, "the file could not be stored (storage full or unavailable)") from None
            except Exception as exc:  # noqa: BLE001  S3 errors: the dependency failed, not the request
                log.error("storing an upload failed: %s", type(exc).__name__)
                raise FileError(503, "the file storage is unavailable") from None
            try:
                await self.records.add(record)
            except BaseException:
                await self.storage.delete(key)
                raise
            url, expires = await self._presign(record, DEFAULT_PRESIGN_SECONDS, now)
            return Upload(
                found.text_json,
                found.type,
                size,
                sha256,
                int((time.perf_counter() - started) * 1000),
                record,
                url,
                expires,
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                scratch.unlink()

    # presign

    async def presign(self, file_key: str, seconds: int) -> tuple[str, int]:
        """A fresh URL for a stored file; a file with a TTL gets its expiry pushed back by its TTL."""
        now = self.clock()
        record = await self.records.get(file_key)
        if record is None or (record.expires_at is not None and record.expires_at <= now):
            raise FileError(404, "file not found (unknown key, expired or deleted)")
        if record.ttl_days:
            extended = now + record.ttl_days * DAY
            await self.records.set_expiry(file_key, extended)
            record = FileRecord(**{**_fields(record), "expires_at": extended})
        return await self._presign(record, seconds, now)

    async def _presign(self, record: FileRecord, seconds: int, now: float) -> tuple[str, int]:
        seconds = max(1, min(int(seconds), self.settings.files_presign_max_seconds))
        expires = int(now) + seconds
        if record.expires_at is not None:
            expires = min(expires, int(record.expires_at))
        return await self.storage.url(
            record.file_key, expires, record.filename, record.content_type, now
        ), expires

    async def fresh_urls(self, channel_id: str, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The files as an agent gets them: each stored file of this channel with a fresh presigned URL as
        its ``url`` (the message's may be hours old). Other channels' keys and the developer's own URLs are
        left as they are."""
        out = []
        for file in files:
            storage = file.get("storage")
            key = storage.get("fileKey") if isinstance(storage, dict) else None
            ours = isinstance(key, str) and key.startswith(f"{channel_id}/")
            if not ours or file.get("url") not in (None, storage.get("presignedUrl")):  # type: ignore[union-attr]
                out.append(file)
                continue
            try:
                url, expires = await self.presign(str(key), DEFAULT_PRESIGN_SECONDS)
            except FileError:  # deleted or expired: the agent gets what the message had
                out.append(file)
                continue
            fresh = {**storage, "presignedUrl": url, "expiresIn": expires}  # type: ignore[dict-item]
            out.append({**file, "url": url, "storage": fresh})
        return out

    # removal

    async def remove(self, records: list[FileRecord]) -> int:
        removed = 0
        for record in records:
            try:
                await self.storage.delete(record.file_key)
            except Exception as exc:  # noqa: BLE001  any storage error: retried on the next sweep
                log.warning(
                    "deleting a stored file failed (%s); it is retried on the next sweep", type(exc).__name__
                )
                continue
            await self.records.remove(record.file_key)
            removed += 1
        return removed

    async def sweep(self) -> int:
        """Remove expired files and those of hard-deleted conversations; how many were removed."""
        removed = 0
        while batch := await self.records.expired(self.clock()):
            done = await self.remove(batch)
            removed += done
            if len(batch) < 500 or not done:
                break
        await asyncio.to_thread(self._drop_stale_scratch)
        return removed + await self.purge_orphans()

    def _drop_stale_scratch(self, older_than: float = 3600.0) -> None:
        """Uploads cut off by a crash leave a ``.part`` file in the scratch folder (never an object)."""
        cutoff = time.time() - older_than
        for leftover in self.storage.scratch_dir().glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    async def purge_orphans(self) -> int:
        removed = 0
        while batch := await self.records.orphans():
            done = await self.remove(batch)
            removed += done
            if len(batch) < 500 or not done:
                break
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.files_sweep_seconds)
            try:
                removed = await self.sweep()
                if removed:
                    log.info("file sweeper removed %d file(s)", removed)
            except Exception:
                log.exception("the file sweeper failed")


def _fields(record: FileRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}
