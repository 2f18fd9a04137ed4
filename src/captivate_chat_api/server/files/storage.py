"""Where file objects live: a local directory (the embedded default) or S3-compatible object storage.

Both are written from a complete local file (the upload streamed to disk), so a crash mid-upload never
leaves a half object visible: locally the file appears by an atomic rename; in S3 an object exists only
once its (multipart) upload completed.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from .signing import UrlSigner


class Storage(abc.ABC):
    kind: str

    @abc.abstractmethod
    def scratch_dir(self) -> Path:
        """A local folder for uploads in progress (on the same file system as the objects, when local)."""

    @abc.abstractmethod
    async def put(self, key: str, source: Path, content_type: str) -> None:
        """Make ``source`` the object ``key`` (``source`` is consumed)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    async def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def url(self, key: str, expires: int, filename: str, content_type: str, now: float) -> str:
        """An address that downloads the object without headers until ``expires`` (unix seconds)."""

    async def close(self) -> None:
        return None


def disposition(filename: str) -> str:
    """``attachment`` with the name (RFC 6266: an ASCII fallback and the UTF-8 form)."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename) or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


class LocalStorage(Storage):
    kind = "local"

    def __init__(self, root: Path, signer: UrlSigner, base_url: Callable[[], str]) -> None:
        self.root = root
        self.signer = signer
        self.base_url = base_url
        """The gateway's public base URL (read per URL: the port is known only once it listens)."""
        (root / ".partial").mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("file key outside the storage root")
        return path

    def scratch_dir(self) -> Path:
        return self.root / ".partial"

    async def put(self, key: str, source: Path, content_type: str) -> None:
        target = self.path_of(key)

        def run() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)

        await asyncio.to_thread(run)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.path_of(key).unlink)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_of(key).is_file)

    async def url(self, key: str, expires: int, filename: str, content_type: str, now: float) -> str:
        return f"{self.base_url().rstrip('/')}/files/{quote(key)}?expires={expires}&sig={self.signer.signature(key, expires)}"


class S3Storage(Storage):
    """``s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME]``; credentials as boto3 finds them (env, config)."""

    kind = "s3"

    def __init__(self, url: str, scratch: Path) -> None:
        try:
            import aioboto3
        except ImportError as exc:
            raise ValueError("s3:// file storage needs: pip install 'captivate-chat-api[s3]'") from exc
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("file storage URL must look like s3://bucket/prefix?endpoint=http://host:port")
        query = dict(parse_qsl(parts.query))
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.endpoint = query.get("endpoint")
        self.region = query.get("region", "us-east-1")
        self._session = aioboto3.Session()
        self._scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self._client: Any = None
        self._client_cm: Any = None

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def client(self) -> Any:
        if self._client is None:
            self._client_cm = self._session.client("s3", endpoint_url=self.endpoint, region_name=self.region)
            self._client = await self._client_cm.__aenter__()
        return self._client

    def scratch_dir(self) -> Path:
        return self._scratch

    async def put(self, key: str, source: Path, content_type: str) -> None:
        client = await self.client()
        try:
            # upload_file streams from disk in parts (multipart above its threshold): never the whole file in memory
            await client.upload_file(
                str(source), self.bucket, self.object_key(key), ExtraArgs={"ContentType": content_type}
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                source.unlink()

    async def delete(self, key: str) -> None:
        client = await self.client()
        await client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        client = await self.client()
        try:
            await client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError:
            return False
        return True

    async def url(self, key: str, expires: int, filename: str, content_type: str, now: float) -> str:
        client = await self.client()
        params = {
            "Bucket": self.bucket,
            "Key": self.object_key(key),
            "ResponseContentDisposition": disposition(filename),
            "ResponseContentType": content_type,
        }
        seconds = max(1, int(expires - now))
        return str(await client.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds))

    async def close(self) -> None:
        if self._client_cm is not None:
            await self._client_cm.__aexit__(None, None, None)
            self._client = self._client_cm = None


def scratch_default() -> Path:
    return Path(tempfile.gettempdir()) / "captivate-chat-uploads"
