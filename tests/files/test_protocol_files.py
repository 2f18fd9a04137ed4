"""protocol/files.py: the three forms of ``content.files`` become one list; agents' view of a file."""

from __future__ import annotations

from captivate_chat_api.protocol.files import (
    agent_file,
    content_files,
    content_text,
    file_url,
    needs_refresh,
    normalize_files,
)

ONE = {
    "filename": "a.pdf",
    "type": "application/pdf",
    "file": {},
    "textContent": {"type": "file_content", "text": "hello", "metadata": {"source": "file_attachment"}},
    "storage": {"fileKey": "k1", "presignedUrl": "http://x/files/k1?sig=1", "expiresIn": 100.0},
}


def test_the_three_forms_are_one_list_without_the_file_key() -> None:
    expected = [{k: v for k, v in ONE.items() if k != "file"}]
    assert normalize_files({"type": "files", "files": [ONE]}) == expected
    assert normalize_files([ONE]) == expected
    assert normalize_files(ONE) == expected


def test_junk_is_dropped() -> None:
    assert normalize_files("nope") == []
    assert normalize_files(None) == []
    assert normalize_files([1, "x", ONE])[0]["filename"] == "a.pdf"
    assert content_files({"type": "text", "text": "hi"}) == []
    assert content_files([ONE]) == []


def test_user_text_is_never_json() -> None:
    assert content_text({"text": "hi", "files": [ONE]}) == "hi"
    assert content_text({"files": [ONE]}) == ""
    assert content_text("plain") == "plain"


def test_agent_file_has_a_top_level_url() -> None:
    assert agent_file(dict(ONE))["url"] == "http://x/files/k1?sig=1"
    own = {"filename": "b.txt", "url": "https://example.org/b.txt"}
    assert file_url(own) == "https://example.org/b.txt"
    assert agent_file(own)["textContent"]["text"] == ""


def test_refresh_window_and_null_expiry() -> None:
    assert needs_refresh(ONE, now=0.0) is True  # expires in 100 s < 300 s
    assert needs_refresh(ONE, now=-1000.0) is False
    assert needs_refresh({"storage": {"fileKey": "k", "expiresIn": None}}, now=0.0) is True
    assert needs_refresh({"filename": "no storage"}, now=0.0) is False
