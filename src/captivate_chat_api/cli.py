"""``captivate-chat``: run the gateway and manage its API keys."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

try:
    import typer
    from rich.console import Console
    from rich.table import Table
except ImportError:  # a client-only install: the CLI is part of the server extra
    typer = None  # type: ignore[assignment]


def _missing_extra() -> None:
    sys.stderr.write("captivate-chat needs the server extra: pip install 'captivate-chat-api[server]'\n")
    raise SystemExit(2)


if typer is None:

    def main() -> None:
        _missing_extra()

else:
    from .server.keys import display_prefix, generate_key, hash_key
    from .server.settings import Settings
    from .server.store import Store, store_from_url

    app = typer.Typer(help="Captivate Chat gateway: the custom-channel protocol, self-hosted.", no_args_is_help=True)
    keys_app = typer.Typer(help="Manage API keys (each key belongs to one channel, i.e. tenant).", no_args_is_help=True)
    app.add_typer(keys_app, name="keys")
    out = Console()

    DatabaseOption = Annotated[
        str | None,
        typer.Option("--database", envvar="CAPTIVATE_DATABASE", help="sqlite:///PATH (default: user data dir)."),
    ]

    def _settings(**overrides: Any) -> Settings:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})

    async def _with_store(settings: Settings, fn: Any) -> Any:
        store = store_from_url(settings.database, synchronous=settings.sqlite_synchronous)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    async def _prepare(settings: Settings) -> str | None:
        """Register ``--api-key`` keys; on a first start with no key at all, create a dev key (returned once)."""
        from .server.gateway import register_key

        async def run(store: Store) -> str | None:
            for key in settings.api_keys:
                await register_key(store, key)
            if settings.create_dev_key and not await store.list_keys():
                key = generate_key()
                await store.create_channel_with_key("dev", hash_key(key), display_prefix(key))
                return key
            return None

        result: str | None = await _with_store(settings, run)
        return result

    def _banner(host: str, port: int, dev_key: str | None, settings: Settings) -> None:
        http = f"http://{host}:{port}"
        key = dev_key or "YOUR_API_KEY"  # a key given with --api-key is never echoed: stdout often ends up in logs
        out.print(f"[bold green]Captivate Chat gateway[/] listening on [bold]{http}[/] (agent: demo)", highlight=False)
        out.print(f"WebSocket: ws://{host}:{port}/dev?apiKey=…   database: {settings.database}", highlight=False)
        if dev_key:
            out.print(f"[bold yellow]Dev API key (shown once, stored hashed):[/] {dev_key}", highlight=False, soft_wrap=True)
        elif not settings.api_keys:
            out.print("API key: the dev key was printed on first start; `captivate-chat keys create` makes a new one.")
        out.print("\n[bold]npm client[/] (captivate-chat-api 7.0.0, Node 20+):", highlight=False)
        out.print(
            "  const WS = require('ws');\n"
            f"  globalThis.WebSocket = class extends WS {{ constructor(u, p) {{ super(u.replace(/^wss:\\/\\/[^/]+/, 'ws://{host}:{port}'), p); }} }};\n"
            "  const realFetch = globalThis.fetch;\n"
            f"  globalThis.fetch = (u, o) => realFetch(String(u).replace(/^https:\\/\\/channel\\.(prod|dev)\\.captivat\\.io/, '{http}'), o);\n"
            "  const { CaptivateChatAPI } = require('captivate-chat-api');\n"
            f"  const api = await CaptivateChatAPI.create('{key}');",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        out.print("\n[bold]Python[/] (websockets):", highlight=False)
        out.print(
            "  import asyncio, json, websockets\n"
            "  async def main():\n"
            f"      async with websockets.connect('ws://{host}:{port}/dev?apiKey={key}') as ws:\n"
            "          await ws.recv()  # socket_connected\n"
            "          send = lambda t, p: ws.send(json.dumps({'action': 'sendMessage', 'event': {'event_type': t, 'event_payload': p}}))\n"
            "          await send('conversation_start', {'userId': 'u1'})\n"
            "          cid = json.loads(await ws.recv())['event']['event_payload']['conversation_id']\n"
            "          await send('user_message', {'conversation_id': cid, 'content': {'type': 'text', 'text': 'hello'}})\n"
            "          async for frame in ws: print(frame)\n"
            "  asyncio.run(main())",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        out.print("\nCtrl+C stops the gateway.", highlight=False)

    @app.command()
    def serve(
        host: Annotated[str | None, typer.Option(envvar="CAPTIVATE_HOST", help="Interface to bind.")] = None,
        port: Annotated[int | None, typer.Option(envvar="CAPTIVATE_PORT", help="Port (0 picks a free one).")] = None,
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
            str | None, typer.Option(envvar="CAPTIVATE_SQLITE_SYNCHRONOUS", help="NORMAL (default: survives process crashes) or FULL (also power loss).")
        ] = None,
        log_level: Annotated[str | None, typer.Option(envvar="CAPTIVATE_LOG_LEVEL")] = None,
    ) -> None:
        """Run the gateway (demo agent) and print its URL, a dev key on first start, and client snippets."""
        from .server.logs import configure_logging
        from .server.serve import run

        if api_key and len(api_key) == 1 and "," in api_key[0]:
            api_key = [k.strip() for k in api_key[0].split(",") if k.strip()]
        settings = _settings(
            host=host, port=port, database=database, api_keys=api_key, sqlite_synchronous=sqlite_synchronous,
            log_level=log_level,
        )
        configure_logging(settings.log_level)
        dev_key = asyncio.run(_prepare(settings))

        def ready(bound_host: str, bound_port: int) -> None:
            if settings.public_url is None:
                settings.port = bound_port
            _banner(bound_host, bound_port, dev_key, settings)

        run(settings, on_ready=ready)

    @keys_app.command("create")
    def keys_create(
        name: Annotated[str, typer.Option(help="A name for the new channel.")] = "channel",
        channel: Annotated[str | None, typer.Option(help="Add the key to this existing channel id.")] = None,
        database: DatabaseOption = None,
    ) -> None:
        """Create an API key (a new channel unless --channel); the key is printed once."""
        settings = _settings(database=database)
        key = generate_key()

        async def run(store: Store) -> str:
            if channel:
                await store.add_key(channel, hash_key(key), display_prefix(key), name)
                return channel
            return (await store.create_channel_with_key(name, hash_key(key), display_prefix(key))).id

        channel_id = asyncio.run(_with_store(settings, run))
        out.print(f"channel: {channel_id}", highlight=False)
        out.print(f"API key (shown once): {key}", highlight=False)

    @keys_app.command("list")
    def keys_list(database: DatabaseOption = None) -> None:
        """List keys (prefixes only: keys are stored hashed)."""
        keys = asyncio.run(_with_store(_settings(database=database), lambda s: s.list_keys()))
        table = Table("id", "prefix", "channel", "label", "created", "revoked")
        for k in keys:
            table.add_row(k.id, k.prefix, k.channel_id, k.label, k.created_at, k.revoked_at or "")
        out.print(table)

    @keys_app.command("revoke")
    def keys_revoke(key_id: Annotated[str, typer.Argument(help="Key id (key_…) or its shown prefix.")], database: DatabaseOption = None) -> None:
        """Revoke a key: it stops working within seconds."""
        info = asyncio.run(_with_store(_settings(database=database), lambda s: s.revoke_key(key_id)))
        if info is None:
            out.print(f"no single key matches {key_id!r}", highlight=False)
            raise typer.Exit(1)
        out.print(f"revoked {info.id} ({info.prefix})", highlight=False)

    @app.command()
    def chat(
        url: Annotated[str, typer.Option(envvar="CAPTIVATE_URL", help="The gateway's HTTP base URL.")] = "http://127.0.0.1:8000",
        key: Annotated[
            str | None, typer.Option(envvar="CAPTIVATE_API_KEY", help="API key (better: env CAPTIVATE_API_KEY).", show_default=False)
        ] = None,
        user: Annotated[str | None, typer.Option(help="User id of a new conversation (default: terminal-$USER).")] = None,
        bot_first: Annotated[bool, typer.Option("--bot-first", help="The agent speaks first (a greeting).")] = False,
        conversation: Annotated[str | None, typer.Option(help="Resume this conversation id instead of starting one.")] = None,
    ) -> None:
        """Chat with the agent in the terminal (/transcript, /metadata, /quit)."""
        from .terminal import ChatOptions, chat_main

        options = ChatOptions(url=url, key=key or "", user_id=user, bot_first=bot_first, conversation_id=conversation)
        raise typer.Exit(chat_main(options))

    def main() -> None:
        app()


if __name__ == "__main__":
    main()
