"""Gateway settings: flags > environment variables ``CAPTIVATE_*`` > a TOML config file > defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from platformdirs import user_data_dir
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from .config_file import ConfigFileSource, config_path


def default_database_url() -> str:
    return "sqlite:///" + str(Path(user_data_dir("captivate-chat", appauthor=False)) / "captivate-chat.db")


class Settings(BaseSettings):
    # the attribute docstrings below are the fields' descriptions: docs/operations.md's settings reference
    model_config = SettingsConfigDict(env_prefix="CAPTIVATE_", extra="ignore", use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Interface to bind."""
    port: int = Field(default=8000, ge=0, le=65535)
    """Port to listen on (0 picks a free one)."""
    database: str = Field(default_factory=default_database_url)
    """``sqlite:///PATH`` (a bare path is SQLite too) or ``postgresql://USER@HOST/DB[?schema=NAME]``.
    Default: ``captivate-chat.db`` in the user data folder."""
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Keys registered at start, each as its own channel (tenant). Env: comma-separated."""

    agent: str = "demo"
    """The agent of the channels ``serve`` starts (the dev key's and the ``api_keys``'): ``demo``,
    ``webhook:URL``, ``openai:MODEL`` or ``python:MODULE:ATTRIBUTE``. Other channels keep their own."""
    workers: int = 1
    """Gateway processes sharing the port (``SO_REUSEPORT``); more than 1 needs ``broker``."""
    broker: str | None = None
    """``redis://HOST:PORT/DB``: share events with other gateway processes (several processes or hosts)."""
    broker_namespace: str | None = None
    """Prefix of every Redis name this deployment uses; default: derived from ``database`` (URL and schema,
    not the password), so two deployments sharing one Redis never hear each other."""
    sqlite_synchronous: str = "NORMAL"
    """NORMAL (default): an acknowledged message survives a process crash (kill -9, OOM) but not an OS
    crash or power loss. FULL: it survives those too, at one fsync per commit (~3 ms here)."""

    sqlite_busy_timeout: float = Field(default=5.0, gt=0)
    """Seconds a SQLite write waits for the write lock when another process holds it (a write that already
    waited this long in line fails at once); then 503 ``store busy``. Reads carry on meanwhile (WAL).
    SQLite has one writer at a time."""
    pg_connect_timeout: float = Field(default=5.0, gt=0)
    """Seconds to open a PostgreSQL connection; then 503."""
    pg_statement_timeout: float = Field(default=10.0, gt=0)
    """Seconds one PostgreSQL statement may run (server ``statement_timeout``; the client gives up 1 s
    later, for a network that went silent); then 503."""
    pg_acquire_timeout: float = Field(default=5.0, gt=0)
    """Seconds a request waits for a pooled PostgreSQL connection; then 503."""

    header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client has to send a request's head (and to complete a WebSocket handshake); then 408
    and the connection is closed (slowloris)."""
    keep_alive_timeout: float = Field(default=5.0, gt=0)
    """Seconds an idle keep-alive HTTP connection is kept open."""
    max_head_bytes: int = Field(default=32 * 1024, ge=1024)
    """Largest request head (request line + headers); over it: 431 and close."""
    max_connections: int = Field(default=0, ge=0)
    """Open connections (HTTP and WebSocket) per process; one more gets a JSON 503 at once. 0: automatic,
    the file-descriptor limit (raised to its hard limit at start) minus a reserve."""

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
    """Burst a socket may send above ``rate_per_socket``."""
    rate_per_key: float = 1000.0
    """Client events per second over all sockets and HTTP requests of one API key (0 disables)."""
    burst_per_key: float = 2000.0
    """Burst a key may send above ``rate_per_key``."""
    in_flight_per_key: int = Field(default=8, ge=0)
    """Units of work of one key at work on the gateway at once (client events, and agent turns' own work):
    this many while the key is the only active one, divided among the keys active in the last second
    otherwise (at least 1). More wait, and the keys waiting take turns (fairness: a key flooding at its
    rate limit queues behind itself). A unit waiting only for its PostgreSQL commit does not count here
    (it counts in ``in_flight_total``). 0 disables admission."""
    in_flight_total: int = Field(default=64, ge=0)
    """Units of work under way at once per process, over all keys, those waiting for their PostgreSQL
    commit included; a key alone may use all of it (with others active, its share of
    ``in_flight_per_key``)."""
    max_sockets_per_key: int = 1000
    """Open WebSockets per API key; one more is refused before the upgrade (429)."""
    starts_per_minute_per_key: float = 600.0
    """``conversation_start`` events per minute per key (0 disables)."""
    max_metadata_bytes: int = 16 * 1024
    """Largest metadata (public + private, as JSON) a conversation may hold, whoever writes it (the client,
    an agent's answer, an async push): over it the write is refused with 413 and nothing changes."""
    max_user_info_bytes: int = 4 * 1024
    """Largest ``userBasicInfo`` (as JSON) of a ``conversation_start``; over it: 413."""
    auth_cache_seconds: float = 2.0
    """How long an API key's or agent token's answer is reused before the store is asked again."""
    revalidate_seconds: float = 5.0
    """How often live sockets' keys and tokens are rechecked: a revoked one is closed (1008)."""
    ws_per_message_deflate: bool = False
    """Accept WebSocket permessage-deflate when a client offers it (browsers and the npm ``ws`` package do).
    Off by default: for chat-sized frames it cost 19-27 % more CPU per round trip and ~46 KiB more per
    connection (bench/floor.py, docs: benchmarks); clients that offer it just go uncompressed."""
    ws_ping_interval: float = 20.0
    """Seconds between WebSocket pings to each client."""
    ws_ping_timeout: float = 20.0
    """Seconds to wait for a pong before a silent socket is dropped."""
    shutdown_grace_seconds: float = 10.0
    """On SIGTERM, how long in-flight requests and agent turns may take to finish."""
    agent_timeout: float = 30.0
    """Seconds an agent turn may take; then the client gets ``general_error`` 504."""
    agent_base_url: str | None = None
    """``openai:`` agents: the chat-completions API's base URL (default OpenAI's; e.g. a local Ollama)."""
    agent_api_key: str | None = None
    """``openai:`` agents: the API key (else ``OPENAI_API_KEY``)."""
    agent_system_prompt: str | None = None
    """``openai:`` agents: the system prompt."""
    agent_history: int | None = None
    """``openai:`` agents: earlier messages sent with each turn (default 20)."""
    agent_max_retries: int | None = None
    """``openai:`` agents: retries of a failed API call (default 2)."""
    agent_file_chars: int | None = None
    """``openai:`` agents: characters of each attached file's text sent to the model (default 20000)."""
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """WebSocket Origin allow-list; empty allows any origin."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins (``https://shop.example``) whose pages may call the HTTP API from the browser (CORS: the
    event POST, transcript, message link, file upload, presign and signed downloads); empty: those of
    ``allowed_origins``, and when both are empty any origin (``*``). Cookies are never allowed (the clients
    send ``x-api-key``). Env: comma-separated."""
    access_log: bool = True
    """Log one line per HTTP request (secrets redacted)."""
    public_url: str | None = None
    """Base URL clients use (for ``message_link``); default ``http://HOST:PORT``."""
    log_level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error``; ``debug`` also shows a start-up error's traceback."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line (time, level, logger, message, conversation_id when known)."""
    config: Path | None = None
    """The TOML config file read (``--config`` or env ``CAPTIVATE_CONFIG``)."""
    create_dev_key: bool = True
    """Create a dev key on the first start (a store with no key at all)."""

    def export_agent_settings(self) -> None:
        """Hand the ``agent_*`` settings (which may come from the config file) to the ``openai:`` agent,
        which reads them from the environment; a variable already set wins, as env beats the file."""
        names = (
            "agent_base_url",
            "agent_api_key",
            "agent_system_prompt",
            "agent_history",
            "agent_max_retries",
            "agent_file_chars",
        )
        for name in names:
            value = getattr(self, name)
            if value is not None:
                os.environ.setdefault(f"CAPTIVATE_{name.upper()}", str(value))

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
    files_extract_workers: int = Field(default=0, ge=0)
    """Text-extraction worker processes (at idle CPU priority); 0: one fewer than the CPU cores, at least one,
    so a core stays free for the chats (docs/benchmarks.md#files measures a chat during extraction)."""
    files_extract_timeout: float = Field(default=30.0, gt=0)
    """Seconds one file's text extraction may take; then its worker is killed and the upload gets 422."""
    files_extract_memory_mb: int = Field(default=1024, ge=64)
    """Address-space limit of an extraction worker (RLIMIT_AS)."""
    files_max_pages: int = Field(default=2000, ge=1)
    files_presign_max_seconds: int = Field(default=7 * 86400, ge=60)
    """Longest validity a presigned URL may be given."""
    files_sweep_seconds: float = Field(default=60.0, gt=0)
    """How often expired (TTL) files and files of hard-deleted conversations are removed."""

    @field_validator("api_keys", "allowed_origins", "cors_origins", "files_allowed_types", mode="before")
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
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            ConfigFileSource(settings_cls, path),
            file_secret_settings,
        )

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
