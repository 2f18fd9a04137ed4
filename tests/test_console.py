"""``captivate-chat console`` and ``handoff``: a human agent takes over a conversation from the AI, against a
real gateway. The console runs in a pseudo-terminal (pexpect), as an agent would use it, and with piped stdin;
the user is a raw protocol client on the WebSocket."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from captivate_chat_api.cli import app
from harness.forkserver import run_cli
from harness.gateway import GatewayProcess, new_key
from harness.terminal import ANSI, Terminal, cli_environment
from harness.tokens import add_token
from harness.wire import WireClient

# Python 3.12+ warns about forkpty() in a process with threads (the gateway's log pumps); the child execs at once.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


@dataclass
class Desk:
    gateway: GatewayProcess
    key: str
    alice: str
    bob: str


@pytest.fixture(scope="module")
def desk(gateway: GatewayProcess, tenant_keys: list[str]) -> Desk:
    """The worker's gateway (demo agent: "human" escalates) with this module's own key, and two human
    agents' tokens of its channel, Alice and Bob."""
    key = tenant_keys[0]
    alice = asyncio.run(add_token(gateway.database, key, "human", "Alice"))
    bob = asyncio.run(add_token(gateway.database, key, "human", "Bob"))
    return Desk(gateway, key, alice, bob)


def environment(token: str | None) -> dict[str, str]:
    return cli_environment("CAPTIVATE_AGENT_TOKEN", token, COLUMNS="200")


class Console(Terminal):
    """``captivate-chat console`` in a pseudo-terminal."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(["console", "--url", url], environment(token))

    async def type(self, line: str, prompt: str = r"agent( [0-9a-f]{8})?> ") -> None:
        """Type a line once the prompt is drawn."""
        await self.see(prompt)
        self.child.sendline(line)


@pytest.fixture
def consoles() -> Iterator[list[Console]]:
    started: list[Console] = []
    yield started
    for console in started:
        console.close()


def run(*args: str, token: str | None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The command with piped stdin (no terminal), bounded in time."""
    return run_cli(list(args), environment(token), stdin)  # forked in the suite (harness/forkserver.py)


def invoke(*args: str, token: str | None) -> Result:
    """The command run in this process (stdin is not a terminal here): for what ends before any console."""
    return CliRunner().invoke(app, list(args), env={"CAPTIVATE_AGENT_TOKEN": token})


async def test_a_human_takes_over_answers_and_hands_back_to_the_ai(
    desk: Desk, consoles: list[Console]
) -> None:
    gw = desk.gateway
    console = Console(gw.http_url, desk.alice)
    consoles.append(console)
    await console.see(r"agent console on http://127\.0\.0\.1:\d+")

    async with WireClient(gw.http_url, gw.ws_url, desk.key) as user:
        cid = await user.start("console-user")
        short = cid[:8]
        await user.say(cid, "human")  # the demo agent escalates
        started = await user.expect("conversation_update", lambda p: p["type"] == "livechat_started")
        assert started["data"]["state"] == "waiting_human"
        await console.see(rf"\[queue\] {short} waiting_human")

        await console.type("/list")
        await console.see(rf"  {short}  waiting_human +user console-user")

        await console.type(f"/take {cid[:6]}")  # a prefix is enough
        await console.see(rf"you took {short} \(user console-user\) as Alice")
        await console.see(r"user: human\r")  # the context: what the user said so far
        await console.see(r"bot: Let me find a human for you\.")
        await console.type("Hello, Alice here.", rf"agent {short}> ")
        live = await user.expect("livechat_message")
        assert live["content"] == {"type": "text", "text": "Hello, Alice here."}

        await user.say(cid, "thanks Alice")
        await console.see(rf"user {short}> {ANSI}thanks Alice")

        bob = await asyncio.to_thread(
            run, "console", "--url", gw.http_url, token=desk.bob, stdin=f"/take {short}\n"
        )
        assert bob.returncode == 0, bob.stderr
        assert f"[{short} is already taken by Alice (409)]" in bob.stdout
        assert "Traceback" not in bob.stdout + bob.stderr

        await console.type(f"/open {short}")
        await console.see(rf"=== conversation {cid} ===")
        await console.see(r"state: human \(Alice\)")
        await console.see(r"--- private metadata")
        await console.see(r"agent: Hello, Alice here\.")

        await console.type("/end")
        await console.see(rf"\[{short} ended: the AI agent answers again\]")
        ended = await user.expect("conversation_update", lambda p: p["type"] == "livechat_ended")
        assert ended["data"]["state"] == "ai"
        await user.say(cid, "back to the bot")
        assert (await user.expect("bot_message"))["content"]["text"] == "You said: back to the bot"

        await console.type("nobody to talk to")
        await console.see(r"\[no current conversation: /take ID first")
        await console.type("/take ffffffff")
        await console.see(r"\[no waiting or live conversation starts with ffffffff")
        await console.type("/quit")
        assert await asyncio.to_thread(console.exit_status) == 0
    assert desk.alice not in console.screen.getvalue()
    assert "Traceback" not in console.screen.getvalue()


async def test_handoff_puts_an_ai_conversation_in_the_queue(desk: Desk) -> None:
    gw = desk.gateway
    async with WireClient(gw.http_url, gw.ws_url, desk.key) as user:
        cid = await user.start("handoff-user")
        result = await asyncio.to_thread(
            invoke, "handoff", cid, "--url", gw.http_url, "--reason", "vip", token=desk.alice
        )
        assert result.exit_code == 0, result.output
        assert f"conversation {cid}: waiting_human" in result.output
        started = await user.expect("conversation_update", lambda p: p["type"] == "livechat_started")
        assert started["data"] == {"state": "waiting_human", "reason": "vip"}

        # the short id the console shows names it too (resolved among the waiting and live ones)
        again = await asyncio.to_thread(invoke, "handoff", cid[:8], "--url", gw.http_url, token=desk.alice)
        assert again.exit_code == 1
        assert (
            f"error: conversation {cid} cannot be handed to a human: cannot escalate: the conversation is waiting_human"
            in again.stderr
        )

    unknown = await asyncio.to_thread(
        invoke, "handoff", "no-such-conversation", "--url", gw.http_url, token=desk.alice
    )
    assert unknown.exit_code == 1
    assert "error: conversation no-such-conversation was not found" in unknown.stderr


def test_a_bad_or_missing_token_is_a_clear_error(desk: Desk) -> None:
    url = desk.gateway.http_url
    wrong = "cca_" + "x" * 40
    for args in (("console", "--url", url), ("handoff", "some-id", "--url", url)):
        refused = invoke(*args, token=wrong)
        assert refused.exit_code == 1, refused.output
        assert f"error: the agent token was refused by {url} (401)" in refused.stderr
        assert wrong not in refused.output
        assert refused.exception is None or isinstance(refused.exception, SystemExit)  # no traceback
        missing = invoke(*args, token=None)
        assert missing.exit_code == 2 and "error: a human agent token is needed" in missing.stderr
    api_key_is_not_a_token = invoke("console", "--url", url, token=desk.key)
    assert api_key_is_not_a_token.exit_code == 1 and "(401)" in api_key_is_not_a_token.stderr
    unreachable = invoke("console", "--url", "http://127.0.0.1:9", token=desk.alice)
    assert unreachable.exit_code == 1 and "error: cannot connect to http://127.0.0.1:9" in unreachable.stderr
    for name in ("console", "handoff"):
        shown = invoke(name, "--help", token=desk.alice)
        assert (
            shown.exit_code == 0
            and "CAPTIVATE_AGENT_TOKEN" in shown.output
            and desk.alice not in shown.output
        )
    bad_url = invoke("console", "--url", "ftp://127.0.0.1:9", token=desk.alice)
    assert bad_url.exit_code == 2 and "error: --url 'ftp://127.0.0.1:9'" in bad_url.stderr


async def test_piped_commands_take_two_conversations_and_switch_between_them(desk: Desk) -> None:
    gw = desk.gateway
    async with WireClient(gw.http_url, gw.ws_url, desk.key) as user:
        first, second = await user.start("piped-1"), await user.start("piped-2")
        for cid in (first, second):
            assert (
                await asyncio.to_thread(invoke, "handoff", cid, "--url", gw.http_url, token=desk.bob)
            ).exit_code == 0
        script = f"/help\n/take {first}\n/take {second[:8]}\nto the second\n/switch {first[:8]}\nto the first\n/end {second[:8]}\n/quit\n"
        result = await asyncio.to_thread(
            run, "console", "--url", gw.http_url, "--name", "Bob B.", token=desk.bob, stdin=script
        )
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "/switch ID" in out and "\x1b" not in out  # plain text without a terminal
        assert f"you took {first[:8]} (user piped-1) as Bob:" in out
        assert f"agent {second[:8]}> to the second" in out and f"agent {first[:8]}> to the first" in out
        assert f"[{second[:8]} ended: the AI agent answers again; current: {first[:8]}]" in out
        assert f"[still live with you: {first[:8]}; their users wait until the chat is ended]" in out

        got = {}
        for _ in range(2):
            message = await user.expect("livechat_message")
            got[message["conversation_id"]] = message["content"]["text"]
        assert got == {first: "to the first", second: "to the second"}
        ended = await user.expect("conversation_update", lambda p: p["type"] == "livechat_ended")
        assert ended["conversation_id"] == second


async def test_the_console_reconnects_when_the_gateway_restarts(
    tmp_path: Path, consoles: list[Console]
) -> None:
    key, database = new_key(), tmp_path / "restart.db"
    gateway = GatewayProcess(database, [key]).start()
    try:
        alice = await add_token(database, key, "human", "Alice")
        console = Console(gateway.http_url, alice)
        consoles.append(console)
        async with WireClient(gateway.http_url, gateway.ws_url, key) as user:
            cid = await user.start("restart-user")
            await user.say(cid, "human")
            await user.expect("conversation_update", lambda p: p["type"] == "livechat_started")
        await console.type(f"/take {cid[:8]}")
        await console.see(f"you took {cid[:8]}")

        await asyncio.to_thread(gateway.stop)
        await console.see(r"\[live feed lost: reconnecting…\]")
        gateway = await asyncio.to_thread(GatewayProcess(database, [key], port=gateway.port).start)
        await console.see(rf"\[live feed restored; following {cid[:8]}\]")

        async with WireClient(gateway.http_url, gateway.ws_url, key) as user:
            await user.say(cid, "are you back?")  # the new feed follows the conversation it took
            await console.see(rf"user {cid[:8]}> {ANSI}are you back\?")
            await console.type("Yes, still here.", rf"agent {cid[:8]}> ")
            assert (await user.expect("livechat_message"))["content"]["text"] == "Yes, still here."
        await console.type("/quit")
        assert await asyncio.to_thread(console.exit_status) == 0
    finally:
        gateway.stop()
