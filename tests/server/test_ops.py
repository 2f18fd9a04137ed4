"""Operations: /metrics after real traffic, /healthz and /readyz, JSON logs, the config file and `config show`.

Every gateway here is a real process on a free loopback port; metrics are read from the exposition text a
Prometheus server would scrape.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sqlite3
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from captivate_chat_api.server import Settings, create_app
from captivate_chat_api.server.config_file import ConfigFileError
from captivate_chat_api.server.keys import display_prefix
from harness.forkserver import run_cli
from harness.gateway import GatewayProcess, new_key
from harness.tokens import add_token
from harness.wire import WireClient, tls

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(http_url: str) -> tuple[Samples, str]:
    async with httpx.AsyncClient(verify=tls(), timeout=10) as http:
        response = await http.get(f"{http_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text), response.text


async def sockets_open(http_url: str, role: str, expected: float) -> float:
    """The open-socket gauge once it reads ``expected`` (a closed socket is noticed a moment later)."""
    seen = -1.0
    for _ in range(100):
        samples, _ = await scrape(http_url)
        seen = value(samples, "captivate_open_sockets", role=role)
        if seen == expected:
            break
        await asyncio.sleep(0.1)
    return seen


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``captivate-chat ARGS`` with no CAPTIVATE_* variable from this environment (only ``env``)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAPTIVATE_")}
    return run_cli(
        list(args), {**clean, "COLUMNS": "200", **(env or {})}, kind="gateway"
    )  # forked in the suite


# metrics ------------------------------------------------------------------------------------------


class Traffic:
    def __init__(self, gateway: GatewayProcess, key: str, failing_key: str, secrets: list[str]) -> None:
        self.gateway, self.key, self.failing_key, self.secrets = gateway, key, failing_key, secrets


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    """A gateway with a demo channel and a channel whose webhook agent is down (its URL carries a token)."""
    database = tmp_path_factory.mktemp("ops") / "gw.db"
    dead_hook = f"webhook:http://127.0.0.1:{free_port()}/hook?token=hooktoken{new_key()[-12:]}"
    created = cli(
        "keys", "create", "--name", "down", "--agent", dead_hook, "--database", f"sqlite:///{database}"
    )
    assert created.returncode == 0, created.stdout + created.stderr
    failing_key = re.search(r"API key \(shown once\): (\S+)", created.stdout).group(1)  # type: ignore[union-attr]
    webhook_secret = re.search(r"webhook secret \(shown once\): (\S+)", created.stdout).group(1)  # type: ignore[union-attr]
    key = new_key()
    gateway = GatewayProcess(database, [key]).start()
    try:
        yield Traffic(
            gateway,
            key,
            failing_key,
            [key, failing_key, webhook_secret, dead_hook.split("?")[1], dead_hook[8:]],
        )
    finally:
        gateway.stop()


async def test_metrics_follow_traffic_sockets_and_errors(traffic: Traffic) -> None:
    gw = traffic.gateway
    before, _ = await scrape(gw.http_url)
    base_clients = value(before, "captivate_open_sockets", role="client")

    async with WireClient(gw.http_url, gw.ws_url, traffic.key) as user:
        assert await sockets_open(gw.http_url, "client", base_clients + 1) == base_clients + 1
        cid = await user.start("metrics-user")  # over HTTP
        await user.say(cid, "hello")
        await user.expect("bot_message")
        await user.send_ws("conversation_start", {"userId": "metrics-user"})  # over the WebSocket
        await user.expect("conversation_start_success")
        assert (
            await user.post("user_message", {"conversation_id": "nope", "content": "x"})
        ).status_code == 404
        await user.ws.send("not json")
        await user.expect("general_error", lambda p: p["error_code"] == 400)
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(f"{gw.ws_url}/dev?apiKey=cck_wrong_{'z' * 20}")
        during, _ = await scrape(gw.http_url)

    assert await sockets_open(gw.http_url, "client", base_clients) == base_clients
    after, text = await scrape(gw.http_url)

    def moved(name: str, **labels: str) -> float:
        return value(during, name, **labels) - value(before, name, **labels)

    assert moved("captivate_conversations_started_total") == 2
    assert moved("captivate_client_events_total", event_type="conversation_start", transport="http") == 1
    assert moved("captivate_client_events_total", event_type="conversation_start", transport="ws") == 1
    assert moved("captivate_client_events_total", event_type="user_message", transport="http") == 2
    assert moved("captivate_messages_total", direction="in", event_type="user_message") == 1
    assert moved("captivate_messages_total", direction="out", event_type="bot_message") == 1
    assert moved("captivate_agent_latency_seconds_count", kind="demo", outcome="ok") == 1
    assert moved("captivate_errors_total", source="http", error_code="404") == 1
    assert moved("captivate_errors_total", source="ws", error_code="400") == 1
    assert moved("captivate_errors_total", source="ws", error_code="401") == 1
    assert value(after, "captivate_broker_lag_seconds") == 0
    for secret in traffic.secrets:
        assert secret not in text


async def test_a_failing_agent_and_a_human_agent_show_up(traffic: Traffic) -> None:
    gw = traffic.gateway
    before, _ = await scrape(gw.http_url)
    human_token = await add_token(gw.database, traffic.failing_key, "human", "Alice")
    agent_socket = await websockets.connect(f"{gw.ws_url}/api/agent/ws?token={human_token}")
    try:
        assert (
            json.loads(await asyncio.wait_for(agent_socket.recv(), 10))["event"]["event_type"]
            == "agent_connected"
        )
        assert (
            await sockets_open(
                gw.http_url, "human", value(before, "captivate_open_sockets", role="human") + 1
            )
            == 1
        )
        async with WireClient(gw.http_url, gw.ws_url, traffic.failing_key) as user:
            cid = await user.start("down-user")
            await user.say(cid, "is anyone there?")
            failure = await user.expect("general_error", timeout=60)  # the webhook is retried, then given up
            assert failure["error_code"] == 502
            async with httpx.AsyncClient(
                verify=tls(),
                base_url=f"{gw.http_url}/api/agent",
                headers={"x-agent-token": human_token},
                timeout=10,
            ) as alice:
                assert (await alice.post(f"/conversations/{cid}/take", json={})).status_code == 200
                assert (
                    await alice.post(f"/conversations/{cid}/messages", json={"text": "Hi, Alice here"})
                ).status_code == 200
            await user.expect("livechat_message")
            during, text = await scrape(gw.http_url)
    finally:
        await agent_socket.close()

    def moved(name: str, **labels: str) -> float:
        return value(during, name, **labels) - value(before, name, **labels)

    assert moved("captivate_agent_latency_seconds_count", kind="webhook", outcome="error") == 1
    assert moved("captivate_errors_total", source="agent", error_code="502") == 1
    assert moved("captivate_messages_total", direction="out", event_type="livechat_message") == 1
    assert await sockets_open(gw.http_url, "human", 0) == 0
    for secret in [*traffic.secrets, human_token]:
        assert secret not in text


def test_two_apps_in_one_process_keep_their_own_registries(tmp_path: Path) -> None:
    first = create_app(Settings(database=f"sqlite:///{tmp_path / 'a.db'}"))
    second = create_app(
        Settings(database=f"sqlite:///{tmp_path / 'b.db'}")
    )  # a shared registry would refuse this
    first.state.metrics.conversation_started()
    assert "captivate_conversations_started_total 1.0" in first.state.metrics.render().decode()
    assert "captivate_conversations_started_total 0.0" in second.state.metrics.render().decode()


# health and readiness -----------------------------------------------------------------------------


async def test_readyz_follows_the_store_and_healthz_stays_live(tmp_path: Path) -> None:
    database = tmp_path / "gw.db"
    gateway = GatewayProcess(database, [new_key()]).start()
    try:
        async with httpx.AsyncClient(verify=tls(), base_url=gateway.http_url, timeout=10) as http:
            ready = await http.get("/readyz")
            assert (ready.status_code, ready.json()) == (
                200,
                {"status": "ready", "store": "ok", "store_write": "ok"},
            )
            # the database file is damaged under the running gateway (all of it checkpointed into the file first)
            with sqlite3.connect(database) as conn:
                for _ in range(50):
                    if conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                        break
                    await asyncio.sleep(0.1)
            with database.open("r+b") as file:
                file.write(b"\0" * 100)
            broken = await http.get("/readyz")
            assert broken.status_code == 503
            assert broken.json()["status"] == "not ready"
            assert broken.json()["store"].startswith("error: DatabaseError")
            assert (await http.get("/healthz")).json() == {"status": "ok"}
    finally:
        gateway.stop()


# JSON logs and the config file ---------------------------------------------------------------------


async def test_json_logs_from_a_config_file_with_env_and_flags_above_it(tmp_path: Path) -> None:
    key = new_key()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    config = tmp_path / "gateway.toml"
    config.write_text(
        'log_format = "json"\n'
        'log_level = "error"\n'  # the environment (debug) must win over this
        f"port = {taken.getsockname()[1]}\n"  # busy: the --port flag must win over this
    )
    env = {"CAPTIVATE_CONFIG": str(config), "CAPTIVATE_LOG_LEVEL": "debug"}
    try:
        gateway = GatewayProcess(tmp_path / "gw.db", [key], env=env).start()
    finally:
        taken.close()
    try:
        async with WireClient(gateway.http_url, gateway.ws_url, key) as user:
            cid = await user.start("json-user")
            await user.say(cid, "hello")
            await user.expect("bot_message")
    finally:
        gateway.stop()

    lines = [json.loads(line) for line in "".join(gateway.stderr).splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    assert any(entry["level"] == "DEBUG" for entry in lines)
    stored = {
        entry["event_type"]: entry
        for entry in lines
        if entry.get("event_type") in ("user_message", "bot_message")
    }
    assert set(stored) == {"user_message", "bot_message"}
    assert all(entry["conversation_id"] == cid for entry in stored.values())
    assert any(entry["message"].startswith("POST /api/custom-channel/sockets/message 200") for entry in lines)
    logs = gateway.logs()
    assert key not in logs and key[9:25] not in logs


def test_settings_precedence_flags_env_file_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CAPTIVATE_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "gateway.toml"
    config.write_text('port = 9100\nlog_level = "warning"\n')
    assert (Settings(config=config).port, Settings(config=config).log_level) == (9100, "warning")
    assert Settings().port == 8000  # no file: the default
    monkeypatch.setenv("CAPTIVATE_CONFIG", str(config))
    assert Settings().port == 9100  # the file named by the environment
    monkeypatch.setenv("CAPTIVATE_PORT", "9200")
    assert (Settings().port, Settings().log_level) == (9200, "warning")  # env over file, file over default
    assert Settings(port=9300).port == 9300  # a flag over env


def test_config_show_redacts_secrets_and_names_sources(tmp_path: Path) -> None:
    key = new_key()
    config = tmp_path / "gateway.toml"
    config.write_text(
        "port = 9100\n"
        'log_level = "warning"\n'
        f'api_keys = ["{key}"]\n'
        'database = "postgresql://chat:hunter2pw@db.example/chat"\n'
        'public_url = "https://chat.example.com/?token=tokensecretvalue"\n'
    )
    result = cli(
        "config",
        "show",
        "--config",
        str(config),
        env={"CAPTIVATE_PORT": "9200", "CAPTIVATE_LOG_FORMAT": "JSON"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    shown = tomllib.loads(text)  # valid TOML: usable as a config file once the secrets are filled in
    assert (shown["port"], shown["log_format"], shown["log_level"], shown["host"]) == (
        9200,
        "json",
        "warning",
        "127.0.0.1",
    )
    for line in ("port = 9200  # env", 'log_level = "warning"  # file', 'host = "127.0.0.1"  # default'):
        assert line in text.splitlines()
    assert shown["api_keys"] == [display_prefix(key)]
    assert shown["database"] == "postgresql://chat:[REDACTED]@db.example/chat"
    for secret in (key, key[9:], "hunter2pw", "tokensecretvalue"):
        assert secret not in text


def test_config_errors_are_clear(tmp_path: Path) -> None:
    unknown = tmp_path / "typo.toml"
    unknown.write_text("prot = 9000\n")
    result = cli("config", "show", "--config", str(unknown))
    assert result.returncode == 2 and "unknown setting(s) prot" in result.stderr

    with pytest.raises(ConfigFileError, match="not found"):
        Settings(config=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        Settings(config=broken)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('log_format = "xml"\n')
    with pytest.raises(ValidationError, match="log_format"):
        Settings(config=wrong)
