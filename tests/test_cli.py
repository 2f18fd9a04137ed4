"""``captivate-chat``: serve prints the URL and a dev key once; keys create/list/revoke work on the same file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from harness.gateway import GatewayProcess

CLI = [sys.executable, "-m", "captivate_chat_api.cli"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "COLUMNS": "200", **(env or {})}
    )


def test_first_start_prints_a_dev_key_once_and_it_works(tmp_path: Path) -> None:
    database = tmp_path / "first.db"
    first = GatewayProcess(database, []).start()
    try:
        banner = "".join(first.stdout)
        key = re.search(r"Dev API key \(shown once, stored hashed\): (cck_\S+)", banner)
        assert key, banner
        assert f"listening on http://127.0.0.1:{first.port}" in banner
        assert "require('captivate-chat-api')" in banner and "import asyncio, json, websockets" in banner
        response = httpx.get(f"{first.http_url}/api/transcript?conversation_id=x", headers={"x-api-key": key.group(1)})
        assert response.status_code == 404  # authenticated: the conversation is what is missing
    finally:
        first.stop()
    second = GatewayProcess(database, []).start()
    try:
        assert "Dev API key" not in "".join(second.stdout)
    finally:
        second.stop()
    assert key.group(1) not in second.logs()


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    created = cli("keys", "create", "--name", "shop", "--database", url)
    assert created.returncode == 0, created.stderr
    key = re.search(r"API key \(shown once\): (cck_\S+)", created.stdout).group(1)  # type: ignore[union-attr]
    listed = cli("keys", "list", "--database", url)
    assert "shop" in listed.stdout and key not in listed.stdout and key[:10] in listed.stdout
    key_id = re.search(r"(key_[0-9a-f]+)", listed.stdout).group(1)  # type: ignore[union-attr]

    gateway = GatewayProcess(tmp_path / "keys.db", []).start()
    try:
        headers = {"x-api-key": key}
        assert httpx.get(f"{gateway.http_url}/api/transcript?conversation_id=x", headers=headers).status_code == 404
        revoked = cli("keys", "revoke", key_id, "--database", url)
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        import time

        deadline = time.monotonic() + 10
        while httpx.get(f"{gateway.http_url}/api/transcript?conversation_id=x", headers=headers).status_code != 401:
            assert time.monotonic() < deadline, "revoked key still accepted"
            time.sleep(0.2)
    finally:
        gateway.stop()
    assert cli("keys", "revoke", "key_nope", "--database", url).returncode == 1


def test_environment_twins(tmp_path: Path) -> None:
    database = tmp_path / "env.db"
    gateway = GatewayProcess(
        database, [], env={"CAPTIVATE_DATABASE": f"sqlite:///{database}", "CAPTIVATE_API_KEYS": "cck_env_one,cck_env_two"}
    ).start()
    try:
        for key in ("cck_env_one", "cck_env_two"):
            response = httpx.get(f"{gateway.http_url}/api/transcript?conversation_id=x", headers={"x-api-key": key})
            assert response.status_code == 404
        assert "Dev API key" not in "".join(gateway.stdout)  # keys were given: no dev key is made
    finally:
        gateway.stop()


def test_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("keys", "list", "--database", "mysql://nowhere")
    assert result.returncode != 0
    assert "unsupported database URL" in result.stdout + result.stderr


def test_agents_and_tokens_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    created = cli("keys", "create", "--name", "shop", "--agent", "webhook:http://127.0.0.1:9/hook", "--database", url)
    assert created.returncode == 0, created.stdout + created.stderr
    channel = re.search(r"channel: (ch_[0-9a-f]+)", created.stdout).group(1)  # type: ignore[union-attr]
    assert re.search(r"webhook secret \(shown once\): whsec_\S+", created.stdout)
    assert cli("keys", "create", "--agent", "carrier-pigeon", "--database", url).returncode == 2

    named = cli("keys", "set-agent", channel, "python:agents_for_tests:reporter", "--name", "billing", "--database", url)
    assert named.returncode == 0 and "agent billing is now python:agents_for_tests:reporter" in named.stdout
    default = cli("keys", "set-agent", channel, "demo", "--database", url)
    assert default.returncode == 0 and "default agent is now demo" in default.stdout
    assert cli("keys", "set-agent", "ch_nope", "demo", "--database", url).returncode == 1

    token = cli("tokens", "create", "--channel", channel, "--role", "human", "--label", "Alice", "--database", url)
    assert token.returncode == 0, token.stdout + token.stderr
    secret = re.search(r"agent token \(shown once\): (cca_\S+)", token.stdout).group(1)  # type: ignore[union-attr]
    listed = cli("tokens", "list", "--database", url)
    assert "Alice" in listed.stdout and "human" in listed.stdout and secret not in listed.stdout
    token_id = re.search(r"(tok_[0-9a-f]+)", listed.stdout).group(1)  # type: ignore[union-attr]
    assert cli("tokens", "revoke", token_id, "--database", url).returncode == 0
    assert cli("tokens", "create", "--channel", channel, "--role", "admin", "--database", url).returncode == 2
