"""Every setting the docs name is a real setting, the config file accepts each of them, and the docs'
settings reference is generated from the model (so it lists them all)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from captivate_chat_api.server.config_file import _toml, reference
from captivate_chat_api.server.settings import Settings
from harness.forkserver import run_cli

ROOT = Path(__file__).resolve().parent.parent
# CAPTIVATE_* names of the docs that are not gateway settings: the clients' and the examples' environment
NOT_SETTINGS = {
    "CAPTIVATE_API_KEY",
    "CAPTIVATE_BASE_URL",
    "CAPTIVATE_URL",
    "CAPTIVATE_AGENT_TOKEN",
    "CAPTIVATE_WEBHOOK_SECRET",
    "CAPTIVATE_PUSH_TOKEN",
    "CAPTIVATE_CONFIG",
    "CAPTIVATE_TEST_POSTGRES",
    "CAPTIVATE_TEST_FRESH_GATEWAYS",
    "CAPTIVATE_TEST_FORK_GATEWAYS",
    "CAPTIVATE_TEST_FORK_SERVERS",
}


def documented_names() -> set[str]:
    text = "".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    return set(re.findall(r"CAPTIVATE_[A-Z][A-Z_]*[A-Z]", text)) - NOT_SETTINGS


def test_every_documented_variable_is_a_setting() -> None:
    fields = {f"CAPTIVATE_{name.upper()}" for name in Settings.model_fields}
    assert documented_names() <= fields, sorted(documented_names() - fields)
    assert {"CAPTIVATE_AGENT", "CAPTIVATE_WORKERS", "CAPTIVATE_AGENT_SYSTEM_PROMPT"} <= documented_names()


def test_the_config_file_accepts_every_setting(tmp_path: Path) -> None:
    values = {
        "host": "127.0.0.2",
        "port": 9001,
        "database": f"sqlite:///{tmp_path / 'x.db'}",
        "agent": "openai:gpt-4o-mini",
        "workers": 3,
        "agent_system_prompt": "Be brief.",
        "agent_history": 6,
        "api_keys": ["cck_file_key_1234567"],
    }
    lines = []
    for name, field in Settings.model_fields.items():
        if name == "config":
            continue
        value = values.get(name, field.default_factory() if field.default_factory else field.default)  # type: ignore[call-arg]
        if value is not None:
            lines.append(f"{name} = {_toml(value)}")
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join(lines) + "\n")
    settings = Settings(config=config)
    for name, value in values.items():
        assert getattr(settings, name) == value, name
    shown = run_cli(
        ["config", "show", "--config", str(config)], dict(os.environ), kind="gateway"
    )  # a process
    assert shown.returncode == 0, shown.stderr
    assert 'agent = "openai:gpt-4o-mini"  # file' in shown.stdout and "workers = 3  # file" in shown.stdout


def test_the_reference_lists_every_setting() -> None:
    table = reference(Settings)
    for name in Settings.model_fields:
        if name != "config":
            assert f"| `{name}` | `CAPTIVATE_{name.upper()}` |" in table
    assert "<!-- settings-reference -->" in (ROOT / "docs" / "operations.md").read_text()
