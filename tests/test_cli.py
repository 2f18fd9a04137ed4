"""``captivate-chat``: serve prints the URL and a dev key once; keys create/list/revoke work on the same file."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from harness.gateway import GatewayProcess


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``captivate-chat ARGS`` (``keys``/``tokens``: no server) through the console script's ``main()`` in this
    process: the same code, output and exit status as the command, without an interpreter start per call
    (``serve`` runs as a process: :class:`GatewayProcess`)."""
    from captivate_chat_api.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    environ = {"COLUMNS": "200", **(env or {})}
    saved = {name: os.environ.get(name) for name in environ}
    argv = sys.argv
    os.environ.update(environ)
    sys.argv = ["captivate-chat", *args]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv = argv
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return subprocess.CompletedProcess(["captivate-chat", *args], code, stdout.getvalue(), stderr.getvalue())


def test_first_start_prints_a_dev_key_once_and_it_works(tmp_path: Path) -> None:
    database = tmp_path / "first.db"
    first = GatewayProcess(database, []).start()
    try:
        banner = "".join(first.stdout)
        key = re.search(r"Dev API key \(shown once, stored hashed\): (cck_\S+)", banner)
        assert key, banner
        assert f"listening on http://127.0.0.1:{first.port}" in banner
        assert (
            "require('captivate-chat-api')" in banner
            and "from captivate_chat_api import BotMessage, CaptivateChatAPI" in banner
        )
        response = httpx.get(
            f"{first.http_url}/api/transcript?conversation_id=x", headers={"x-api-key": key.group(1)}
        )
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
        assert (
            httpx.get(f"{gateway.http_url}/api/transcript?conversation_id=x", headers=headers).status_code
            == 404
        )
        revoked = cli("keys", "revoke", key_id, "--database", url)
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        import time

        deadline = time.monotonic() + 10
        while (
            httpx.get(f"{gateway.http_url}/api/transcript?conversation_id=x", headers=headers).status_code
            != 401
        ):
            assert time.monotonic() < deadline, "revoked key still accepted"
            time.sleep(0.2)
    finally:
        gateway.stop()
    assert cli("keys", "revoke", "key_nope", "--database", url).returncode == 1


def test_environment_twins(tmp_path: Path) -> None:
    database = tmp_path / "env.db"
    gateway = GatewayProcess(
        database,
        [],
        env={"CAPTIVATE_DATABASE": f"sqlite:///{database}", "CAPTIVATE_API_KEYS": "cck_env_one,cck_env_two"},
    ).start()
    try:
        for key in ("cck_env_one", "cck_env_two"):
            response = httpx.get(
                f"{gateway.http_url}/api/transcript?conversation_id=x", headers={"x-api-key": key}
            )
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
    created = cli(
        "keys", "create", "--name", "shop", "--agent", "webhook:http://127.0.0.1:9/hook", "--database", url
    )
    assert created.returncode == 0, created.stdout + created.stderr
    channel = re.search(r"channel: (ch_[0-9a-f]+)", created.stdout).group(1)  # type: ignore[union-attr]
    assert re.search(r"webhook secret \(shown once\): whsec_\S+", created.stdout)
    assert cli("keys", "create", "--agent", "carrier-pigeon", "--database", url).returncode == 2

    named = cli(
        "keys",
        "set-agent",
        channel,
        "python:agents_for_tests:reporter",
        "--name",
        "billing",
        "--database",
        url,
    )
    assert named.returncode == 0 and "agent billing is now python:agents_for_tests:reporter" in named.stdout
    default = cli("keys", "set-agent", channel, "demo", "--database", url)
    assert default.returncode == 0 and "default agent is now demo" in default.stdout
    assert cli("keys", "set-agent", "ch_nope", "demo", "--database", url).returncode == 1

    token = cli(
        "tokens", "create", "--channel", channel, "--role", "human", "--label", "Alice", "--database", url
    )
    assert token.returncode == 0, token.stdout + token.stderr
    secret = re.search(r"agent token \(shown once\): (cca_\S+)", token.stdout).group(1)  # type: ignore[union-attr]
    listed = cli("tokens", "list", "--database", url)
    assert "Alice" in listed.stdout and "human" in listed.stdout and secret not in listed.stdout
    token_id = re.search(r"(tok_[0-9a-f]+)", listed.stdout).group(1)  # type: ignore[union-attr]
    assert cli("tokens", "revoke", token_id, "--database", url).returncode == 0
    assert cli("tokens", "create", "--channel", channel, "--role", "admin", "--database", url).returncode == 2
    supervisor = cli(
        "tokens",
        "create",
        "--channel",
        channel,
        "--role",
        "supervisor",
        "--label",
        "Carol",
        "--database",
        url,
    )
    assert supervisor.returncode == 0, supervisor.stdout + supervisor.stderr
    assert "(supervisor, channel" in supervisor.stdout
    assert "supervisor" in cli("tokens", "list", "--json", "--database", url).stdout


AGENT = """
from captivate_chat_api.protocol import AgentResponse, ChatRequest


async def answer(request: ChatRequest) -> AgentResponse:
    return AgentResponse(response=[{"type": "text", "text": f"Echo: {request.user_input}"}], session_id=request.session_id)
"""


def reply_to(gateway: GatewayProcess, key: str, text: str) -> str:
    from captivate_chat_api import BotMessage
    from captivate_chat_api.sync import CaptivateChatAPI

    with CaptivateChatAPI(key, base_url=gateway.http_url) as api:
        conversation = api.create_conversation("u", mode="user-first")
        events = conversation.events(timeout=15)
        conversation.send_message(text)
        return next(e.content["text"] for e in events if isinstance(e, BotMessage))


def test_serve_agent_rule_and_a_truthful_banner(tmp_path: Path) -> None:
    """`serve --agent` sets (and stores) the agent of the channels serve starts, on every start; a python:
    module is found in the working directory; channels made with `keys create` keep their own agent."""
    (tmp_path / "my_agent.py").write_text(AGENT)
    database = tmp_path / "agents.db"
    shop = cli("keys", "create", "--name", "shop", "--database", f"sqlite:///{database}")
    shop_key = re.search(r"API key \(shown once\): (cck_\S+)", shop.stdout).group(1)  # type: ignore[union-attr]
    own_key = "cck_test_" + "k" * 30

    first = GatewayProcess(
        database, [own_key], args=["--agent", "python:my_agent:answer"], cwd=tmp_path, console_script=True
    ).start()
    try:
        banner = "".join(first.stdout)
        assert "(agent: demo)" not in banner
        assert re.search(r"\(shop; key cck_\S+\): agent demo", banner), banner
        assert re.search(r"\(channel cck_test_k…; key cck_test_k…\): agent python:my_agent:answer", banner), (
            banner
        )
        assert reply_to(first, own_key, "hi") == "Echo: hi"  # not "502 the agent failed"
        assert reply_to(first, shop_key, "hi") == "You said: hi"
    finally:
        first.stop()

    # no --agent: kept (forked from the fork server: the installed script's own start-up is `first`'s, and
    # a fresh one cost ~1.3 s of CPU and wall a start)
    again = GatewayProcess(database, [own_key], cwd=tmp_path).start()
    try:
        assert re.search(r"key cck_test_k…\): agent python:my_agent:answer", "".join(again.stdout))
    finally:
        again.stop()
    back = GatewayProcess(database, [own_key], args=["--agent", "demo"], cwd=tmp_path).start()
    try:
        assert re.search(r"key cck_test_k…\): agent demo", "".join(back.stdout))
        assert reply_to(back, own_key, "hi") == "You said: hi"
    finally:
        back.stop()


def test_keys_list_is_plain_columns_and_revoke_takes_the_shown_prefix(tmp_path: Path) -> None:
    import json

    url = f"sqlite:///{tmp_path / 'list.db'}"
    for name in ("shop", "blog"):
        assert cli("keys", "create", "--name", name, "--database", url).returncode == 0
    narrow = cli("keys", "list", "--database", url, env={"COLUMNS": "30"})
    rows = [line.split() for line in narrow.stdout.splitlines()]
    assert rows[0][:3] == ["id", "prefix", "channel"] and len(rows) == 3  # one line per key, never wrapped
    scripted = json.loads(cli("keys", "list", "--json", "--database", url).stdout)
    assert [k["label"] for k in scripted] == ["shop", "blog"] and rows[1][0] == scripted[0]["id"]
    shown = rows[1][1]  # e.g. cck_AbCdEf…, exactly as listed
    assert shown.endswith("…")
    revoked = cli("keys", "revoke", shown, "--database", url)
    assert revoked.returncode == 0 and f"revoked {scripted[0]['id']}" in revoked.stdout
    without_ellipsis = cli("keys", "revoke", rows[2][1].rstrip("…"), "--database", url)
    assert without_ellipsis.returncode == 0, without_ellipsis.stdout
    assert all(k["revoked"] for k in json.loads(cli("keys", "list", "--json", "--database", url).stdout))
