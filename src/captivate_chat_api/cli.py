"""``captivate-chat``: run the gateway and manage its API keys."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

try:
    import typer
    from rich.console import Console
except ImportError:  # a client-only install: the CLI is part of the server extra
    typer = None  # type: ignore[assignment]


def _missing_extra() -> None:
    sys.stderr.write("captivate-chat needs the server extra: pip install 'captivate-chat-api[server]'\n")
    raise SystemExit(2)


if typer is None:

    def main() -> None:
        _missing_extra()

else:
    # The settings (pydantic-settings, the config file) and the store are imported where a command needs
    # them: `chat`, `console` and `handoff` are clients and load neither (~0.1 CPU-s less per run).
    from .server.keys import display_prefix, generate_key, hash_key
    from .server.startup import StartupError

    if TYPE_CHECKING:
        from .server.settings import Settings
        from .server.store import AgentTokenInfo, ApiKeyInfo, Channel, Store

    DEV_CHANNEL = "dev"  # the channel (and key label) of the key serve makes on the first start
    BANNER_CHANNELS = 5

    app = typer.Typer(
        help="Captivate Chat gateway: the custom-channel protocol, self-hosted.", no_args_is_help=True
    )
    keys_app = typer.Typer(
        help="Manage API keys (each key belongs to one channel, i.e. tenant).", no_args_is_help=True
    )
    app.add_typer(keys_app, name="keys")
    tokens_app = typer.Typer(
        help="Manage agent tokens: `push` (an AI agent answering later) or `human` (live-chat agents).",
        no_args_is_help=True,
    )
    app.add_typer(tokens_app, name="tokens")
    out = Console()

    DatabaseOption = Annotated[
        str | None,
        typer.Option(
            "--database",
            envvar="CAPTIVATE_DATABASE",
            help="sqlite:///PATH (default: user data dir) or postgresql://USER@HOST/DB[?schema=NAME].",
        ),
    ]

    ConfigOption = Annotated[
        str | None,
        typer.Option(
            "--config",
            envvar="CAPTIVATE_CONFIG",
            help="A TOML settings file (flags > env > file > defaults).",
        ),
    ]

    def _fail(message: str) -> NoReturn:
        """A start-up problem: one line on stderr that says what to do, exit code 2."""
        sys.stderr.write(f"error: {message}\n")
        raise typer.Exit(2)

    def _settings(**overrides: Any) -> Settings:
        from pydantic import ValidationError

        from .server.config_file import ConfigFileError
        from .server.settings import Settings

        try:
            return Settings(**{k: v for k, v in overrides.items() if v is not None})
        except ConfigFileError as exc:
            _fail(str(exc))
        except ValidationError as exc:  # the message only: an input value may be a secret
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            _fail(f"setting {problems}")

    async def _with_store(settings: Settings, fn: Any) -> Any:
        from .server.startup import check_database_url, describe
        from .server.store import store_from_url

        try:
            check_database_url(settings.database)
            store = store_from_url(settings.database, synchronous=settings.sqlite_synchronous)
            await store.open()
        except Exception as exc:
            raise StartupError(describe(exc, settings.database)) from exc
        try:
            return await fn(store)
        finally:
            await store.close()

    def _checked_spec(spec: str | None) -> str | None:
        if spec is None:
            return None
        from .server.agents import check_spec

        try:
            return check_spec(spec)
        except ValueError as exc:
            out.print(f"error: {exc}", highlight=False)
            raise typer.Exit(2) from None

    async def _set_agent(store: Store, channel_id: str, spec: str, name: str | None = None) -> str | None:
        """Point a channel (or one of its named agents) at ``spec``; a webhook gets a signing secret, returned
        the first time so the agent's author can verify deliveries."""
        channel = await store.get_channel(channel_id)
        if channel is None:
            raise KeyError(channel_id)
        secret = None
        if spec.startswith("webhook:") and not channel.webhook_secret:
            secret = "whsec_" + secrets.token_urlsafe(32)
        if name:
            await store.update_channel(channel_id, agents={name: spec}, webhook_secret=secret)
        else:
            await store.update_channel(channel_id, agent=spec, webhook_secret=secret)
        return secret

    @contextlib.contextmanager
    def _starting(settings: Settings, debug: bool) -> Iterator[None]:
        """Turn whatever fails while starting into one line (and, with --debug, its traceback)."""
        from .server.startup import describe

        try:
            yield
        except (typer.Exit, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 -- every start-up failure becomes one line
            if debug:
                traceback.print_exc()
            _fail(describe(exc, settings.database, settings.broker))

    async def _prepare(settings: Settings, agent: str | None) -> None:
        """Register ``--api-key`` keys; with ``agent`` (given by flag, env or file), point the channels serve
        starts at it (those keys' and the dev key's). Checks every served channel's agents can be loaded."""
        from .server.agents import check_loadable
        from .server.gateway import register_key
        from .server.startup import check_writable

        async def run(store: Store) -> None:
            channels = [await register_key(store, key) for key in settings.api_keys]
            channels += [
                await store.get_channel(k.channel_id) for k in await store.list_keys() if _is_dev_key(k)
            ]
            if agent:
                for channel in {c.id: c for c in channels if c is not None}.values():
                    if channel.agent != agent:
                        secret = await _set_agent(store, channel.id, agent)
                        if secret:
                            out.print(
                                f"webhook secret of {channel.id} (shown once): {secret}", highlight=False
                            )
            for channel, _keys in await _served_channels(store):
                for spec in {channel.agent, *channel.agents.values()}:
                    try:
                        check_loadable(spec)
                    except ValueError as exc:
                        raise StartupError(
                            f"channel {channel.id}: {exc}: fix it with `captivate-chat keys set-agent`"
                        ) from None

        await _with_store(settings, run)
        check_writable(settings.database)

    def _is_dev_key(key: ApiKeyInfo) -> bool:
        return key.label == DEV_CHANNEL and key.revoked_at is None

    async def _served_channels(store: Store) -> list[tuple[Channel, list[ApiKeyInfo]]]:
        """The channels that have a live key, each with those keys, oldest first."""
        by_channel: dict[str, list[ApiKeyInfo]] = {}
        for key in await store.list_keys():
            if key.revoked_at is None:
                by_channel.setdefault(key.channel_id, []).append(key)
        found = [(await store.get_channel(cid), keys) for cid, keys in by_channel.items()]
        return [(channel, keys) for channel, keys in found if channel is not None]

    async def _first_start(settings: Settings, agent: str | None) -> tuple[str | None, list[str]]:
        """Once serving: a dev key if the store has no key at all (returned once), and the banner's line per
        served channel (its id, name, key prefixes and effective agent)."""

        async def run(store: Store) -> tuple[str | None, list[str]]:
            dev_key = None
            if settings.create_dev_key and not await store.list_keys():
                dev_key = generate_key()
                channel = await store.create_channel_with_key(
                    DEV_CHANNEL, hash_key(dev_key), display_prefix(dev_key)
                )
                if agent:
                    secret = await _set_agent(store, channel.id, agent)
                    if secret:
                        out.print(f"webhook secret of {channel.id} (shown once): {secret}", highlight=False)
            lines = []
            for channel, keys in await _served_channels(store):
                named = "".join(f", {name}: {spec}" for name, spec in sorted(channel.agents.items()))
                prefixes = ", ".join(k.prefix for k in keys)
                lines.append(f"{channel.id} ({channel.name}; key {prefixes}): agent {channel.agent}{named}")
            return dev_key, lines

        return await _with_store(settings, run)  # type: ignore[no-any-return]

    def _in_thread(coroutine: Any) -> Any:
        """Run a coroutine to completion on a loop of its own (the caller may be inside a running loop)."""
        result: dict[str, Any] = {}

        def target() -> None:
            try:
                result["value"] = asyncio.run(coroutine)
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
                result["error"] = exc

        thread = threading.Thread(target=target, name="captivate-first-start")
        thread.start()
        thread.join()
        if "error" in result:
            raise result["error"]
        return result["value"]

    def _banner(host: str, port: int, dev_key: str | None, channels: list[str], settings: Settings) -> None:
        from .server.config_file import redact_value
        from .server.snippets import npm_snippet, python_snippet

        http = f"http://{host}:{port}"
        key = (
            dev_key or "YOUR_API_KEY"
        )  # a key given with --api-key is never echoed: stdout often ends up in logs
        say = functools.partial(out.print, highlight=False, markup=False, soft_wrap=True)
        out.print(f"[bold green]Captivate Chat gateway[/] listening on [bold]{http}[/]", highlight=False)
        say(
            f"WebSocket: ws://{host}:{port}/dev?apiKey=…   database: {redact_value('database', settings.database)}"
        )
        chat = (
            f"{http}/?key={dev_key}" if dev_key else f"{http}/"
        )  # the page stores the key and drops it from the URL
        say(f"Web chat: {chat}   agent console: {http}/console")
        if dev_key:
            out.print(
                f"[bold yellow]Dev API key (shown once, stored hashed):[/] {dev_key}",
                highlight=False,
                soft_wrap=True,
            )
        elif not settings.api_keys:
            say(
                "API key: the dev key was printed on the first start; `captivate-chat keys create` makes a new one."
            )
        say(
            f"Channels ({len(channels)}):"
            if channels
            else "Channels: none yet (`captivate-chat keys create`)"
        )
        for line in channels[:BANNER_CHANNELS]:
            say(f"  {line}")
        if len(channels) > BANNER_CHANNELS:
            say(f"  … and {len(channels) - BANNER_CHANNELS} more: `captivate-chat keys list`")
        say(
            "\nnpm client (Node 20+): save as app.js (CommonJS), `npm install captivate-chat-api@7.0.0`, then `node app.js`:"
        )
        say(npm_snippet(http, key))
        say("\nPython (this SDK): save as app.py, then `python app.py`:")
        say(python_snippet(http, key))
        say("\nCtrl+C stops the gateway.")

    @app.command()
    def serve(
        host: Annotated[str | None, typer.Option(envvar="CAPTIVATE_HOST", help="Interface to bind.")] = None,
        port: Annotated[
            int | None, typer.Option(envvar="CAPTIVATE_PORT", help="Port (0 picks a free one).")
        ] = None,
        database: DatabaseOption = None,
        api_key: Annotated[
            list[str] | None,
            typer.Option(
                "--api-key",
                envvar="CAPTIVATE_API_KEYS",
                help="Register KEY at start as its own channel (repeatable; env: comma-separated).",
            ),
        ] = None,
        sqlite_synchronous: Annotated[
            str | None,
            typer.Option(
                envvar="CAPTIVATE_SQLITE_SYNCHRONOUS",
                help="NORMAL (default: survives process crashes) or FULL (also power loss).",
            ),
        ] = None,
        log_level: Annotated[str | None, typer.Option(envvar="CAPTIVATE_LOG_LEVEL")] = None,
        log_format: Annotated[
            str | None,
            typer.Option(envvar="CAPTIVATE_LOG_FORMAT", help="text (default) or json (one object per line)."),
        ] = None,
        config: ConfigOption = None,
        broker: Annotated[
            str | None,
            typer.Option(
                envvar="CAPTIVATE_BROKER",
                help="redis://HOST:PORT/DB to run several gateway processes as one.",
            ),
        ] = None,
        agent: Annotated[
            str | None,
            typer.Option(
                envvar="CAPTIVATE_AGENT",
                help="Agent of the channels serve starts (the dev key's and --api-key keys'; stored, on every start):"
                " demo | webhook:URL | openai:MODEL | python:MODULE:ATTRIBUTE (a module of the working directory"
                " is found). Channels made with `keys create` keep their own.",
            ),
        ] = None,
        workers: Annotated[
            int | None,
            typer.Option(
                envvar="CAPTIVATE_WORKERS",
                help="Gateway processes sharing this port (SO_REUSEPORT); more than 1 needs --broker and a shared"
                " database (PostgreSQL; a SQLite file only for small setups).",
            ),
        ] = None,
        debug: Annotated[
            bool,
            typer.Option(
                "--debug",
                help="Debug logs, and the traceback of a start-up error (env: CAPTIVATE_LOG_LEVEL=debug).",
            ),
        ] = False,
    ) -> None:
        """Run the gateway and print its URL, a dev key on the first start, its channels' agents, and client snippets."""
        from .server.agents import check_loadable
        from .server.logs import configure_logging
        from .server.serve import run
        from .server.startup import bind, check_database_url

        if api_key and len(api_key) == 1 and "," in api_key[0]:
            api_key = [k.strip() for k in api_key[0].split(",") if k.strip()]
        settings = _settings(
            host=host,
            port=port,
            database=database,
            api_keys=api_key,
            sqlite_synchronous=sqlite_synchronous,
            log_level="debug" if debug else log_level,
            broker=broker,
            log_format=log_format,
            config=config,
            agent=agent,
            workers=workers,
        )
        debug = debug or settings.log_level.lower() == "debug"
        configure_logging(settings.log_level, settings.log_format)
        settings.export_agent_settings()
        spec = settings.agent if "agent" in settings.model_fields_set else None  # given: flag, env or file
        count = settings.workers
        with _starting(settings, debug):
            check_database_url(settings.database)
            if spec is not None:
                check_loadable(spec)  # a bad spec fails here, not as a 502 at the first message
            if count != 1:
                from .server.workers import check

                check(settings, count)
            sock = bind(settings.host, settings.port) if count == 1 else None  # before anything is created
            asyncio.run(_prepare(settings, spec))
            if settings.broker:
                asyncio.run(_ping_broker(settings.broker))

        def ready(bound_host: str, bound_port: int) -> None:
            if settings.public_url is None:
                settings.port = bound_port
            dev_key, channels = _in_thread(
                _first_start(settings, spec)
            )  # only now: a failed start loses no key
            if count != 1:
                out.print(f"{count} worker processes share the port", highlight=False)
            _banner(bound_host, bound_port, dev_key, channels, settings)

        with _starting(settings, debug):
            if count != 1:
                from .server.workers import supervise

                raise typer.Exit(supervise(settings, count, on_ready=ready))
            run(settings, on_ready=ready, sock=sock)

    async def _ping_broker(url: str) -> None:
        from .server.broker import broker_from_url

        broker = broker_from_url(url)
        try:
            await broker.ping()
        finally:
            await broker.close()

    @keys_app.command("create")
    def keys_create(
        name: Annotated[str, typer.Option(help="A name for the new channel.")] = "channel",
        channel: Annotated[str | None, typer.Option(help="Add the key to this existing channel id.")] = None,
        agent: Annotated[str | None, typer.Option(help="The new channel's agent (default demo).")] = None,
        database: DatabaseOption = None,
    ) -> None:
        """Create an API key (a new channel unless --channel); the key is printed once."""
        settings = _settings(database=database)
        key = generate_key()
        spec = _checked_spec(agent)

        async def run(store: Store) -> tuple[str, str | None]:
            if channel:
                if await store.get_channel(channel) is None:
                    out.print(f"error: no channel {channel}", highlight=False)
                    raise typer.Exit(1)
                await store.add_key(channel, hash_key(key), display_prefix(key), name)
                channel_id = channel
            else:
                channel_id = (
                    await store.create_channel_with_key(name, hash_key(key), display_prefix(key))
                ).id
            secret = await _set_agent(store, channel_id, spec) if spec else None
            return channel_id, secret

        channel_id, secret = asyncio.run(_with_store(settings, run))
        out.print(f"channel: {channel_id}", highlight=False)
        out.print(f"API key (shown once): {key}", highlight=False)
        if secret:
            out.print(f"webhook secret (shown once): {secret}", highlight=False)

    @keys_app.command("set-agent")
    def keys_set_agent(
        channel: Annotated[str, typer.Argument(help="Channel id (ch_…), as `keys list` shows.")],
        spec: Annotated[
            str, typer.Argument(help="demo | webhook:URL | openai:MODEL | python:MODULE:ATTRIBUTE")
        ],
        name: Annotated[
            str | None,
            typer.Option(help="Register it as a named agent (for escalate_to_agent) instead of the default."),
        ] = None,
        database: DatabaseOption = None,
    ) -> None:
        """Choose the agent that answers a channel's conversations."""
        checked = _checked_spec(spec)
        assert checked is not None
        try:
            secret = asyncio.run(
                _with_store(_settings(database=database), lambda s: _set_agent(s, channel, checked, name))
            )
        except KeyError:
            out.print(f"error: no channel {channel}", highlight=False)
            raise typer.Exit(1) from None
        out.print(
            f"{channel}: {'agent ' + name if name else 'default agent'} is now {checked}", highlight=False
        )
        if secret:
            out.print(f"webhook secret (shown once): {secret}", highlight=False)

    JsonOption = Annotated[bool, typer.Option("--json", help="One JSON array, for scripts.")]

    def _listing(rows: list[dict[str, str]], as_json: bool) -> None:
        """Aligned plain columns, never wrapped or cut (ids are copied into the next command), or JSON."""
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            typer.echo("(none)")
            return
        columns = list(rows[0])
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
        for row in [dict(zip(columns, columns, strict=True)), *rows]:
            typer.echo("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())

    def _pick(items: list[Any], given: str, what: str) -> Any:
        """The one item whose id, shown prefix (with or without its "…") or id prefix is ``given``."""
        bare = given.rstrip("…")
        exact = [i for i in items if given in (i.id, i.prefix) or bare == i.prefix.rstrip("…")]
        matches = exact or [i for i in items if bare and i.id.startswith(bare)]
        if len(matches) != 1:
            shown = ", ".join(f"{i.id} ({i.prefix})" for i in matches[:5])
            out.print(
                f"no single {what} matches {given!r}" + (f": {shown}" if matches else ""), highlight=False
            )
            raise typer.Exit(1)
        return matches[0]

    @keys_app.command("list")
    def keys_list(database: DatabaseOption = None, as_json: JsonOption = False) -> None:
        """List keys (prefixes only: keys are stored hashed)."""
        keys = asyncio.run(_with_store(_settings(database=database), lambda s: s.list_keys()))
        rows = [
            {
                "id": k.id,
                "prefix": k.prefix,
                "channel": k.channel_id,
                "label": k.label,
                "created": k.created_at,
                "revoked": k.revoked_at or "",
            }
            for k in keys
        ]
        _listing(rows, as_json)

    @keys_app.command("revoke")
    def keys_revoke(
        key_id: Annotated[str, typer.Argument(help="Key id (key_…) or its prefix as `keys list` shows it.")],
        database: DatabaseOption = None,
    ) -> None:
        """Revoke a key: it stops working within seconds."""

        async def run(store: Store) -> ApiKeyInfo | None:
            return await store.revoke_key(_pick(await store.list_keys(), key_id, "key").id)

        info = asyncio.run(_with_store(_settings(database=database), run))
        if info is None:
            out.print(f"no single key matches {key_id!r}", highlight=False)
            raise typer.Exit(1)
        out.print(f"revoked {info.id} ({info.prefix})", highlight=False)

    @tokens_app.command("create")
    def tokens_create(
        channel: Annotated[str, typer.Option(help="The channel id (ch_…) the token is scoped to.")],
        role: Annotated[
            str,
            typer.Option(
                help="push (AI agent pushes), human (live-chat agent) or supervisor (a live-chat agent who"
                " may also reply in and end other agents' live chats)."
            ),
        ] = "human",
        label: Annotated[str, typer.Option(help="A name (for human agents: the name users see).")] = "",
        database: DatabaseOption = None,
    ) -> None:
        """Create an agent token; printed once, stored hashed."""
        if role not in ("push", "human", "supervisor"):
            out.print("error: --role must be push, human or supervisor", highlight=False)
            raise typer.Exit(2)
        token = "cca_" + secrets.token_urlsafe(32)

        async def run(store: Store) -> str:
            if await store.get_channel(channel) is None:
                out.print(f"error: no channel {channel}", highlight=False)
                raise typer.Exit(1)
            return (
                await store.add_agent_token(channel, hash_key(token), display_prefix(token), role, label)
            ).id

        token_id = asyncio.run(_with_store(_settings(database=database), run))
        out.print(f"token {token_id} ({role}, channel {channel})", highlight=False)
        out.print(f"agent token (shown once): {token}", highlight=False)

    @tokens_app.command("list")
    def tokens_list(database: DatabaseOption = None, as_json: JsonOption = False) -> None:
        """List agent tokens (prefixes only)."""
        tokens = asyncio.run(_with_store(_settings(database=database), lambda s: s.list_agent_tokens()))
        rows = [
            {
                "id": t.id,
                "prefix": t.prefix,
                "role": t.role,
                "channel": t.channel_id,
                "label": t.label,
                "created": t.created_at,
                "revoked": t.revoked_at or "",
            }
            for t in tokens
        ]
        _listing(rows, as_json)

    @tokens_app.command("revoke")
    def tokens_revoke(
        token_id: Annotated[
            str, typer.Argument(help="Token id (tok_…) or its prefix as `tokens list` shows it.")
        ],
        database: DatabaseOption = None,
    ) -> None:
        """Revoke an agent token (live agent sockets using it are closed within seconds)."""

        async def run(store: Store) -> AgentTokenInfo | None:
            return await store.revoke_agent_token(
                _pick(await store.list_agent_tokens(), token_id, "token").id
            )

        info = asyncio.run(_with_store(_settings(database=database), run))
        if info is None:
            out.print(f"no single token matches {token_id!r}", highlight=False)
            raise typer.Exit(1)
        out.print(f"revoked {info.id} ({info.prefix})", highlight=False)

    @app.command()
    def chat(
        url: Annotated[
            str, typer.Option(envvar="CAPTIVATE_URL", help="The gateway's HTTP base URL.")
        ] = "http://127.0.0.1:8000",
        key: Annotated[
            str | None,
            typer.Option(
                envvar="CAPTIVATE_API_KEY",
                help="API key (better: env CAPTIVATE_API_KEY).",
                show_default=False,
            ),
        ] = None,
        user: Annotated[
            str | None, typer.Option(help="User id of a new conversation (default: terminal-$USER).")
        ] = None,
        bot_first: Annotated[
            bool, typer.Option("--bot-first", help="The agent speaks first (a greeting).")
        ] = False,
        conversation: Annotated[
            str | None, typer.Option(help="Resume this conversation id instead of starting one.")
        ] = None,
    ) -> None:
        """Chat with the agent in the terminal (/transcript, /metadata, /quit)."""
        from .terminal import ChatOptions, chat_main

        options = ChatOptions(
            url=url, key=key or "", user_id=user, bot_first=bot_first, conversation_id=conversation
        )
        raise typer.Exit(chat_main(options))

    AgentUrlOption = Annotated[str, typer.Option(envvar="CAPTIVATE_URL", help="The gateway's HTTP base URL.")]
    AgentTokenOption = Annotated[
        str | None,
        typer.Option(
            envvar="CAPTIVATE_AGENT_TOKEN",
            help="A human agent token (better: env CAPTIVATE_AGENT_TOKEN).",
            show_default=False,
        ),
    ]

    @app.command()
    def console(
        url: AgentUrlOption = "http://127.0.0.1:8000",
        token: AgentTokenOption = None,
        name: Annotated[
            str | None,
            typer.Option(help="Deprecated: the name users see is the token's label (tokens create --label)."),
        ] = None,
    ) -> None:
        """Live chat for human agents: see who waits, /take a conversation, answer its user, /end it."""
        from .console import ConsoleOptions, console_main

        raise typer.Exit(console_main(ConsoleOptions(url=url, token=token or "", name=name)))

    @app.command()
    def handoff(
        conversation_id: Annotated[str, typer.Argument(help="The conversation to hand to a human.")],
        url: AgentUrlOption = "http://127.0.0.1:8000",
        token: AgentTokenOption = None,
        reason: Annotated[str | None, typer.Option(help="Why (kept with the hand-off).")] = None,
    ) -> None:
        """Put an AI conversation in the humans' queue (live chat) and print its new state."""
        from .console import handoff_main

        raise typer.Exit(handoff_main(url, token or "", conversation_id, reason))

    config_app = typer.Typer(help="The gateway's configuration.", no_args_is_help=True)
    app.add_typer(config_app, name="config")

    @config_app.command("show")
    def config_show(config: ConfigOption = None) -> None:
        """Print the effective settings as TOML, each with its source, secrets redacted."""
        from .server.config_file import render

        typer.echo(render(_settings(config=config), {"config": config}), nl=False)

    def main() -> None:
        try:
            app()
        except StartupError as exc:  # e.g. `keys list` on a database that cannot be opened
            import os

            if "--debug" in sys.argv or os.environ.get("CAPTIVATE_LOG_LEVEL", "").lower() == "debug":
                traceback.print_exc()
            sys.stderr.write(f"error: {exc}\n")
            raise SystemExit(2) from None


if __name__ == "__main__":
    main()
