"""The file service on the gateway's port, at the npm client's paths: ``POST /api/file-to-text``,
``POST /api/presigned-url``, and ``GET /files/KEY?expires=&sig=`` (signed downloads of local storage).

Errors are ``{success: false, error}`` (what the npm client shows). The upload's ``path`` field carries the
API key: it is never logged nor echoed.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import ValidationError

from ...protocol.files import FileToTextResponse, PresignRequest, PresignResponse
from ..files import INSTALL_HINT, missing_modules
from ..files.receive import receive_upload
from ..files.service import FileError, FileService, Upload, parse_ttl
from ..files.storage import LocalStorage, disposition
from ..gateway import Gateway

_FAILURE = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["success", "error"],
                "properties": {"success": {"type": "boolean", "const": False}, "error": {"type": "string"}},
            }
        }
    }
}
FILE_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"description": "Refused: `{success: false, error}` (the npm client shows `error`)", **_FAILURE},
    "5XX": {"description": "501 without the files extra; 503/507 when the storage fails", **_FAILURE},
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "path"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "path": {"type": "string", "description": "APIKEY/CONVERSATION_ID"},
                        "storage": {"type": "string", "enum": ["true", "false"]},
                        "ttlDays": {"type": "string", "enum": ["1", "7", "30", "90"]},
                        "includeMetadata": {"type": "string", "enum": ["true", "false"]},
                    },
                }
            }
        },
    }
}
_PRESIGN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["fileKey"],
                    "properties": {"fileKey": {"type": "string"}, "expiresIn": {"type": "integer"}},
                }
            }
        },
    }
}
router = APIRouter(responses=FILE_ERRORS)
MULTIPART_OVERHEAD = 64 * 1024
"""Room for the form's other fields and boundaries above the file size limit."""
JSON = "application/json"


def failure(status: int, error: str) -> JSONResponse:
    return JSONResponse({"success": False, "error": error}, status_code=status)


def service_of(request: Request) -> FileService | None:
    return getattr(request.app.state, "files", None)


def unavailable() -> JSONResponse:
    return failure(501, f"{INSTALL_HINT} (missing: {', '.join(missing_modules())})")


async def _owner(request: Request, path: str | None) -> tuple[Any, str]:
    """The channel and conversation named by ``path`` = ``APIKEY/CONVERSATION_ID``; else 401 (an unknown
    key, an unknown conversation and another tenant's conversation all get the same answer)."""
    refused = FileError(
        401, "path must name a valid API key and one of its conversations (APIKEY/CONVERSATION_ID)"
    )
    if not path or "/" not in path:
        raise FileError(
            401, "an upload needs path=APIKEY/CONVERSATION_ID (upload through conversation.fileManager)"
        )
    key, _, conversation_id = path.rpartition("/")
    gateway: Gateway = request.app.state.gateway
    channel = await gateway.auth.channel(key)
    if channel is None or not conversation_id:
        raise refused
    if await gateway.store.get_conversation(channel.id, conversation_id) is None:
        raise refused
    return channel, conversation_id


@router.post("/api/file-to-text", openapi_extra=_UPLOAD_BODY)
async def file_to_text(request: Request) -> Response:
    """Multipart ``file``, ``storage``, ``path``, ``ttlDays``, ``includeMetadata``: the file's text, and with
    storage its ``fileKey`` and a presigned URL."""
    service = service_of(request)
    if service is None or missing_modules():
        return unavailable()
    limit = service.settings.files_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        return failure(413, f"the file is larger than {limit} bytes")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return failure(400, "send the file as multipart/form-data (field `file`)")
    received = None
    try:
        received = await receive_upload(
            request.stream(),
            request.headers["content-type"],
            max_file=limit,
            max_body=limit + MULTIPART_OVERHEAD,
            scratch=service.scratch_file,
        )
        fields = received.fields
        channel, conversation_id = await _owner(request, fields.get("path"))
        service.check_rate(channel)
        storage = fields.get("storage", "true").strip().lower() != "false"
        done = await service.upload(
            channel,
            conversation_id,
            received.scratch,
            filename=received.filename or "file",
            size=received.size,
            sha256=received.sha256,
            storage=storage,
            ttl_days=parse_ttl(fields.get("ttlDays")),
        )
        received = None
    except FileError as exc:
        return failure(exc.status, exc.error)
    finally:
        if received is not None:
            received.scratch.unlink(missing_ok=True)
    return Response(answer(done, fields.get("includeMetadata", "").lower() == "true"), media_type=JSON)


def answer(done: Upload, metadata: bool) -> bytes:
    """The JSON answer, the text spliced in as the worker encoded it (never parsed nor re-encoded here)."""
    rest = FileToTextResponse(success=True)
    if done.record is not None:
        rest = FileToTextResponse(
            success=True,
            fileKey=done.record.file_key,
            presignedUrl=done.presigned_url,
            expiresIn=done.url_expires,
            fileSize=done.size,
            processingTime=done.processing_ms,
        )
    tail = rest.model_dump(exclude_none=True, exclude={"success", "text"})
    if metadata:
        tail["metadata"] = {"fileType": done.content_type, "fileSize": done.size, "sha256": done.sha256}
    closing = b"," + orjson.dumps(tail)[1:] if tail else b"}"
    return b'{"success":true,"text":' + (done.text_json or b'""') + closing


@router.post("/api/presigned-url", openapi_extra=_PRESIGN_BODY)
async def presigned_url(request: Request) -> Response:
    """``{fileKey, expiresIn}`` (a duration, default 7200 s) -> ``{success, presignedUrl, expiresIn}``."""
    service = service_of(request)
    if service is None or missing_modules():
        return unavailable()
    raw = await request.body() if int(request.headers.get("content-length") or 0) <= 16 * 1024 else b""
    try:
        asked = PresignRequest.model_validate(json.loads(raw or b"null"))
    except (ValueError, ValidationError):
        return failure(400, "send JSON {fileKey, expiresIn}")
    try:
        url, _ = await service.presign(asked.fileKey, asked.expiresIn)
    except FileError as exc:
        return failure(exc.status, exc.error)
    seconds = max(1, min(asked.expiresIn, service.settings.files_presign_max_seconds))
    return JSONResponse(
        PresignResponse(success=True, presignedUrl=url, expiresIn=seconds).model_dump(exclude_none=True)
    )


@router.get("/files/{file_key:path}", include_in_schema=False)
async def download(request: Request, file_key: str, expires: str = "", sig: str = "") -> Response:
    """A stored file, for a URL signed by this deployment and not expired; always as an attachment."""
    service = service_of(request)
    if service is None or not isinstance(service.storage, LocalStorage):
        return failure(404, "not found")
    if not service.storage.signer.valid(file_key, expires, sig, service.clock()):
        return failure(403, "this file link is invalid or has expired")
    record = await service.records.get(file_key)
    if record is None or (record.expires_at is not None and record.expires_at <= service.clock()):
        return failure(410, "this file was deleted or has expired")
    path = service.storage.path_of(file_key)
    if not path.is_file():
        return failure(410, "this file was deleted or has expired")
    return FileResponse(
        path,
        media_type=record.content_type,
        headers={
            "Content-Disposition": disposition(record.filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "private, no-store",
        },
    )
