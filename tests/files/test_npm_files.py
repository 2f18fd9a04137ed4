"""The published npm client 7.0.0, unchanged, uses its file manager against a real gateway.

``npm_files_check.cjs`` runs every file call of the client once per module (only its fetch and WebSocket are
redirected from the cloud to the gateway); each test checks one call. Without node/npm the tests skip,
except under CI where they fail.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import samples
from npm_runner import run_script, step

from harness.gateway import GatewayProcess, new_key

pytestmark = pytest.mark.interop

SCRIPT = Path(__file__).with_name("npm_files_check.cjs")
MAX_BYTES = 3 * 1024 * 1024
TYPES = {
    "report.pdf": "application/pdf",
    "letter.docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "sheet.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "deck.pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "data.csv": "text/csv",
    "notes.txt": "text/plain",
    "scan.png": "image/png",
}


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return [new_key(), new_key()]


@pytest.fixture(scope="module")
def files_gateway(tmp_path_factory: pytest.TempPathFactory, keys: list[str]) -> Iterator[GatewayProcess]:
    db = tmp_path_factory.mktemp("files-gw") / "gateway.db"
    gateway = GatewayProcess(db, keys, env={"CAPTIVATE_FILES_MAX_BYTES": str(MAX_BYTES)}).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def npm(
    files_gateway: GatewayProcess, keys: list[str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("samples")
    samples.write_all(folder)
    env = {
        **os.environ,
        "CCA_PORT": str(files_gateway.port),
        "CCA_KEY1": keys[0],
        "CCA_KEY2": keys[1],
        "CCA_BAD_KEY": new_key(),
        "CCA_SAMPLES": str(folder),
        "CCA_WORD": samples.WORD,
        "CCA_OVERSIZE": str(MAX_BYTES + 1024 * 1024),
    }
    return run_script(SCRIPT, env, timeout=150, context=lambda: f"gateway log:\n{files_gateway.logs()}")


def stored(storage: dict[str, Any]) -> None:
    assert storage["fileKey"] and storage["presignedUrl"].startswith("http://127.0.0.1:")
    assert storage["expiresIn"] > time.time() + 7000  # absolute unix seconds, ~2 h ahead
    assert storage["fileSize"] > 0 and storage["processingTime"] >= 0


def test_create_through_the_conversation(npm: dict[str, Any], keys: list[str]) -> None:
    result = step(npm, "create")
    assert result["type"] == "files" and result["length"] == 1
    assert result["filename"] == "report.pdf" and result["hasWord"]
    first = result["first"]
    assert first["source"] == "file_attachment"
    stored(first["storage"])
    assert keys[0] not in first["storage"]["fileKey"] and keys[0] not in first["storage"]["presignedUrl"]


def test_every_type_is_extracted(npm: dict[str, Any]) -> None:
    result = step(npm, "create_file_each_type")
    assert set(result) == set(TYPES)
    for name, file in result.items():
        assert file["hasWord"], f"{name}: the known word is not in the extracted text"
        assert file["filename"] == name
        stored(file["storage"])


def test_a_nameless_blob_is_detected_from_its_bytes(npm: dict[str, Any]) -> None:
    result = step(npm, "nameless_blob")
    assert result["filename"].startswith("attachment_") and result["hasWord"]


def test_create_multiple(npm: dict[str, Any]) -> None:
    result = step(npm, "create_multiple")
    assert result["length"] == 2
    assert [f["filename"] for f in result["files"]] == ["notes.txt", "data.csv"]
    assert all(f["hasWord"] and f["storage"]["fileKey"] for f in result["files"])


def test_storage_false_keeps_the_url_and_stores_nothing(npm: dict[str, Any]) -> None:
    result = step(npm, "storage_false_with_url")
    assert (
        result["hasWord"] and result["url"] == "https://example.org/notes.txt" and result["storage"] is None
    )


@pytest.mark.parametrize("name", ["refresh_secure_url", "get_secure_file_url"])
def test_secure_urls_download_as_attachments(npm: dict[str, Any], name: str) -> None:
    result = step(npm, name)
    download = result["download"]
    assert download["status"] == 200 and download["bytes"] == len(samples.pdf())
    assert download["disposition"].startswith("attachment;") and download["nosniff"] == "nosniff"
    assert download["contentType"] == "application/pdf"


def test_presigning_an_unknown_key_is_refused(npm: dict[str, Any]) -> None:
    result = step(npm, "presign_unknown_key")
    assert result["refused"] and "404" in result["message"]


def test_set_time_to_live_applies_to_uploads(npm: dict[str, Any], files_gateway: GatewayProcess) -> None:
    result = step(npm, "set_time_to_live")
    with sqlite3.connect(str(files_gateway.database)) as db:
        ttl, expires = db.execute(
            "SELECT ttl_days, expires_at FROM files WHERE file_key = ?", (result["fileKey"],)
        ).fetchone()
    assert ttl == 7 and abs(expires - (time.time() + 7 * 86400)) < 600


@pytest.mark.parametrize("name", ["send_wrapper", "send_list", "send_one_object"])
def test_the_agent_sees_files_in_each_form(npm: dict[str, Any], name: str) -> None:
    said = step(npm, name)
    received = [t for t in said if t and t.startswith("Files received: ")]
    assert received, said
    if name == "send_list":
        assert "notes.txt" in received[0] and "data.csv" in received[0]
    else:
        assert "report.pdf" in received[0]
    if name == "send_one_object":  # files only: the agent's user_input is "" (never the content's JSON)
        assert not any(t.startswith("You said") for t in said if t)


def test_transcript_has_the_normalised_files(npm: dict[str, Any]) -> None:
    entries = step(npm, "get_transcript")
    by_text = {e["text"]: e["files"] for e in entries}
    assert {"wrapper form", "list form", "", "expiring form"} <= set(by_text)
    assert [f["filename"] for f in by_text["list form"]] == ["notes.txt", "data.csv"]
    for files in by_text.values():
        assert all("file" not in f["keys"] and f["storage"]["fileKey"] for f in files)


def test_transcript_refresh_is_pushed_back(npm: dict[str, Any]) -> None:
    result = step(npm, "get_transcript_after_refresh")
    assert (
        result["expiresIn"] > time.time() + 7000
    )  # the first getTranscript() refreshed it and edited the message
    assert result["presignedUrl"] != "stale" and result["download"]["status"] == 200


def test_uploads_to_conversations_not_of_the_key_are_refused(npm: dict[str, Any]) -> None:
    result = step(npm, "cross_tenant_upload")
    assert all(r["refused"] and "401" in r["message"] for r in result.values()), result
    same = {r["message"] for name, r in result.items() if name != "no_path"}
    assert len(same) == 1, "another tenant's conversation must get the same answer as an unknown one"


def test_an_oversize_upload_is_413_and_the_gateway_serves_on(
    npm: dict[str, Any], files_gateway: GatewayProcess
) -> None:
    assert "413" in step(npm, "oversize")["message"]
    assert step(npm, "after_oversize")["hasWord"]


def test_the_log_never_holds_a_key(
    npm: dict[str, Any], files_gateway: GatewayProcess, keys: list[str]
) -> None:
    logs = files_gateway.logs()
    assert "/api/file-to-text" in logs
    assert all(key not in logs for key in keys)
