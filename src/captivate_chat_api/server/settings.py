"""Gateway settings: flags > environment variables ``CAPTIVATE_*`` > a TOML config file > defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from platformdirs import user_data_dir
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from .config_file import ConfigFileSource, config_path


def default_database_url() -> str:
    return "sqlite:///" + str(Path(user_data_dir("captivate-chat", appauthor=False)) / "captivate-chat.db")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAPTIVATE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    database: str = Field(default_factory=default_database_url)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Keys registered at start, each as its own channel (tenant). Env: comma-separated."""

    broker: str | None = None
    """``redis://HOST:PORT/DB``: share events with other gateway processes (several processes or hosts)."""
    sqlite_synchronous: str = "NORMAL"
    """NORMAL (default): an acknowledged message survives a process crash (kill -9, OOM) but not an OS
    crash or power loss. FULL: it survives those too, at one fsync per commit (~3 ms here)."""

    max_frame_bytes: int = 256 * 1024
    """Largest client WebSocket frame; over it the socket is closed with 1009."""
    max_body_bytes: int = 256 * 1024
    """Largest HTTP request body; over it the answer is 413."""
    max_outbound_frame_bytes: int = 128 * 1024
    """A bot message larger than this goes out as ``general_error 413`` with a ``message_link``."""
    send_queue_frames: int = 1000
    """Frames queued for one socket before it is closed as too slow (it resumes by seq)."""
    rate_per_socket: float = 50.0
    """Client events per second one socket may send (token bucket; 0 disables)."""
    burst_per_socket: float = 100.0
    rate_per_key: float = 1000.0
    """Client events per second over all sockets and HTTP requests of one API key (0 disables)."""
    burst_per_key: float = 2000.0
    max_sockets_per_key: int = 1000
    """Open WebSockets per API key; one more is refused before the upgrade (429)."""
    starts_per_minute_per_key: float = 600.0
    """``conversation_start`` events per minute per key (0 disables)."""
    max_metadata_bytes: int = 16 * 1024
    """Largest metadata (public + private, as JSON) a conversation may hold."""
    auth_cache_seconds: float = 2.0
    """How long an API key's or agent token's answer is reused before the store is asked again."""
    revalidate_seconds: float = 5.0
    """How often live sockets' keys and tokens are rechecked: a revoked one is closed (1008)."""
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    shutdown_grace_seconds: float = 10.0
    agent_timeout: float = 30.0
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """WebSocket Origin allow-list; empty allows any origin."""
    access_log: bool = True
    public_url: str | None = None
    """Base URL clients use (for ``message_link``); default ``http://HOST:PORT``."""
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line (time, level, logger, message, conversation_id when known)."""
    config: Path | None = None
    """The TOML config file read (``--config`` or env ``CAPTIVATE_CONFIG``)."""
    create_dev_key: bool = True

    # Files (/api/file-to-text, /api/presigned-url, /files/...): docs/files.md
    files_storage: str | None = None
    """Where uploaded files live: a folder path, or ``s3://BUCKET/PREFIX?endpoint=URL``; default: a
    ``files`` folder next to the SQLite database."""
    files_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    """Largest upload; over it the answer is 413, before the body is read."""
    files_per_message: int = Field(default=10, ge=0)
    """Most files one message may carry (``content.files``)."""
    files_allowed_types: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """MIME types accepted (as detected from the bytes); empty: every supported type. Env: comma-separated."""
    files_uploads_per_minute_per_key: float = 60.0
    """Uploads per minute per channel (0 disables)."""
    files_quota_bytes_per_channel: int = Field(default=0, ge=0)
    """Bytes of stored files one channel may hold (0: no quota); over it an upload gets 507."""
    files_extract_workers: int = Field(default=2, ge=1)
    files_extract_timeout: float = Field(default=30.0, gt=0)
    """Seconds one file's text extraction may take; then its worker is killed and the upload gets 422."""
    files_extract_memory_mb: int = Field(default=1024, ge=64)
    """Address-space limit of an extraction worker (RLIMIT_AS)."""
    files_max_pages: int = Field(default=2000, ge=1)
    files_presign_max_seconds: int = Field(default=7 * 86400, ge=60)
    """Longest validity a presigned URL may be given."""
    files_sweep_seconds: float = Field(default=60.0, gt=0)
    """How often expired (TTL) files and files of hard-deleted conversations are removed."""

    @field_validator("api_keys", "allowed_origins", "files_allowed_types", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("sqlite_synchronous")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError("sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA")
        return level

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_path(getattr(init_settings, "init_kwargs", {}).get("config"))
        return init_settings, env_settings, dotenv_settings, ConfigFileSource(settings_cls, path), file_secret_settings

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
