"""The settings file (TOML) and ``captivate-chat config show``.

Precedence, highest first: flags, environment (``CAPTIVATE_*``), the config file (``--config PATH`` or
``CAPTIVATE_CONFIG``), defaults. The file holds top-level ``name = value`` pairs with the settings'
names (``port = 9000``, ``log_format = "json"``); an unknown name is an error, not silently ignored.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from ..redact import redact
from .keys import display_prefix

CONFIG_ENV = "CAPTIVATE_CONFIG"
REDACTED = "[REDACTED]"
_SECRET_NAME = re.compile(r"(?i)(key|token|secret|password)")


class ConfigFileError(ValueError):
    """The config file is missing, is not TOML, or names an unknown setting."""


def config_path(explicit: object = None) -> Path | None:
    """The file named by ``--config`` (``explicit``), else by ``CAPTIVATE_CONFIG``, else none."""
    value = explicit if explicit not in (None, "") else os.environ.get(CONFIG_ENV) or None
    return Path(str(value)).expanduser() if value is not None else None


def read_config(path: Path, known: set[str]) -> dict[str, Any]:
    """The settings in ``path``. Raises ConfigFileError."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigFileError(f"config file {path}: not found") from None
    except OSError as exc:
        raise ConfigFileError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"config file {path}: not valid TOML: {exc}") from None
    values = {name.replace("-", "_"): value for name, value in data.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigFileError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return values


class ConfigFileSource(PydanticBaseSettingsSource):
    """A pydantic-settings source for the config file (placed below env, above defaults)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        known = set(settings_cls.model_fields) - {"config"}
        self.path = path
        self.values = read_config(path, known) if path is not None else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


# config show -------------------------------------------------------------------------------------


def redact_value(name: str, value: Any) -> Any:
    """A setting as it may be shown: secrets as prefixes or [REDACTED], URLs without passwords or queries."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if _SECRET_NAME.search(name):
        return [display_prefix(str(v)) for v in value] if isinstance(value, list) else REDACTED
    if isinstance(value, list):
        return [redact_value(name, v) for v in value]
    return redact(_without_password(str(value)))


def _without_password(text: str) -> str:
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if parts.password is None:
        return text
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


def sources(
    settings_cls: type[BaseSettings], flags: dict[str, Any], file_values: dict[str, Any]
) -> dict[str, str]:
    """Where each setting's value came from: flag, env, file or default."""
    env = EnvSettingsSource(settings_cls)()
    origin = {}
    for name in settings_cls.model_fields:
        if flags.get(name) is not None:
            origin[name] = "flag"
        elif name in env:
            origin[name] = "env"
        elif name in file_values:
            origin[name] = "file"
        else:
            origin[name] = "default"
    return origin


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def render(settings: BaseSettings, flags: dict[str, Any] | None = None) -> str:
    """The effective settings as TOML (usable as a config file once secrets are filled in), each line
    commented with its source."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    path = config_path(flags.get("config"))
    file_values = read_config(path, set(type(settings).model_fields)) if path is not None else {}
    origin = sources(type(settings), flags, file_values)
    lines = [
        "# captivate-chat effective settings (secrets redacted)",
        f"# precedence: flags > env (CAPTIVATE_*) > config file ({path if path else 'none'}) > defaults",
    ]
    for name in type(settings).model_fields:
        if name == "config":
            continue
        value = redact_value(name, getattr(settings, name))
        if value is None:
            lines.append(f"# {name} = (not set)  # {origin[name]}")
        else:
            lines.append(f"{name} = {_toml(value)}  # {origin[name]}")
    return "\n".join(lines) + "\n"


# the settings reference (docs/operations.md) ------------------------------------------------------------


def reference(settings_cls: type[BaseSettings]) -> str:
    """A Markdown table of every setting: its config-file name, environment variable, default and meaning,
    generated from the settings model so the docs cannot miss one."""
    rows = ["| setting (config file) | environment | default | what it does |", "|---|---|---|---|"]
    for name, field in settings_cls.model_fields.items():
        if name == "config":
            continue
        if field.default_factory is not None:
            default = "see description" if name == "database" else _toml(field.default_factory())  # type: ignore[call-arg]
        else:
            default = "not set" if field.default is None else _toml(field.default)
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{name}` | `CAPTIVATE_{name.upper()}` | `{default}` | {description} |")
    return "\n".join(rows) + "\n"
