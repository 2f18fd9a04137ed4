"""The console's state and commands: which conversations this agent took, which one is current, the live feed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from ..client.backoff import ReconnectPolicy
from ..errors import AuthenticationError, CaptivateChatError, NotFoundError, ProtocolError
from ..terminal.blocks import Block, error_block, system_block
from ..terminal.screen import LineReader, Screen
from .agent_api import AgentAPI, AgentFeed, FeedEvent
from .view import context_blocks, conversation_blocks, event_block, listing_block, queue_block, short

COMMANDS = {
    "/list": "waiting and live conversations (* current, + yours)",
    "/take ID": "take a conversation: plain lines then go to its user (an id prefix is enough)",
    "/open ID": "a conversation's details, metadata (private too) and transcript",
    "/switch ID": "make another conversation you took the current one",
    "/end [ID]": "end the live chat (default: the current one): the AI agent answers again",
    "/help": "list these commands",
    "/quit": "leave (Ctrl+D also does); conversations you took stay live until ended",
}
FEED_RECONNECT = ReconnectPolicy(initial_delay=0.25, max_delay=2.0, max_attempts=30)
"""About a minute of attempts: a restarting gateway is back within seconds, a console waits for it."""
SENDERS = {
    "user": "user_message",
    "bot": "bot_message",
    "human_agent": "livechat_message",
    "system": "system_message",
}


class UsageError(Exception):
    """A command that cannot run as typed (no such conversation, none current...): shown, never fatal."""


class ConsoleSession:
    """One human agent at the terminal: runs the typed commands and shows the live feed."""

    def __init__(self, api: AgentAPI, feed: AgentFeed, screen: Screen) -> None:
        self.api = api
        self.feed = feed
        self.screen = screen
        self.me = api.name
        """The name users see; the token's label until a take tells us (or ``--name``)."""
        self.known: dict[str, dict[str, Any]] = {}
        """Waiting and live conversations by id, from the last list and the feed's queue updates."""
        self.taken: dict[str, int] = {}
        """Conversations this console took, with the last ``seq`` shown of each."""
        self.current: str | None = None
        self.own: set[str] = set()
        self._sending = asyncio.Lock()
        self.quitting = False

    def prompt(self) -> str:
        return f"agent {short(self.current)}> " if self.current else "agent> "

    def show_listing(self, conversations: list[dict[str, Any]]) -> None:
        self.known = {str(c["conversation_id"]): c for c in conversations if c.get("conversation_id")}
        self.screen.show(listing_block(conversations, set(self.taken), self.current))

    # the live feed ----------------------------------------------------------------------------------

    def _drop(self, conversation_id: str) -> None:
        self.taken.pop(conversation_id, None)
        if self.current == conversation_id:
            self.current = next(reversed(self.taken), None)

    async def on_event(self, event: FeedEvent) -> None:
        cid = event.conversation_id
        if event.type == "handoff_update" and cid:
            state, human = event.payload.get("state"), event.payload.get("human_agent")
            if state in ("waiting_human", "human"):
                self.known[cid] = {
                    **self.known.get(cid, {"conversation_id": cid}),
                    "state": state,
                    "human_agent": human,
                }
            else:
                self.known.pop(cid, None)
            self.screen.show(queue_block(event.payload))
            if cid in self.taken and not (state == "human" and (self.me is None or human == self.me)):
                self._drop(cid)
                self.screen.show(system_block(f"[{short(cid)} is no longer yours: {state}]"))
            return
        if cid is None or cid not in self.taken:
            return  # a conversation this console took earlier and ended: no longer shown
        seq = event.payload.get("seq")
        if isinstance(seq, int):
            if seq <= self.taken[cid]:
                return  # already shown (a transcript read after a reconnect, or a take)
            self.taken[cid] = seq
        if event.type == "livechat_message":
            async with self._sending:  # a send in flight records its message id before we decide
                pass
            if event.payload.get("message_id") in self.own:
                self.own.discard(event.payload["message_id"])
                return  # what this console sent is already on screen
        block = event_block(event)
        if block is not None:
            self.screen.show(block)

    async def follow(self) -> int:
        """Show the feed's events; when it drops, reconnect (bounded). 1 once it cannot be restored."""
        while True:
            async for event in self.feed.events():
                await self.on_event(event)
            if self.quitting:
                return 0
            self.screen.show(Block("error", ["[live feed lost: reconnecting…]"]))
            feed = await self._reconnect()
            if feed is None:
                return 1
            self.feed = feed
            await self._catch_up()
            following = f"; following {', '.join(short(c) for c in self.taken)}" if self.taken else ""
            self.screen.show(system_block(f"[live feed restored{following}]"))

    async def _reconnect(self) -> AgentFeed | None:
        for delay in FEED_RECONNECT.delays():
            await asyncio.sleep(delay)
            try:
                return await self.api.open_feed()
            except AuthenticationError:
                self.screen.show(error_block("the agent token was refused (revoked?): the console stops"))
                return None
            except CaptivateChatError:
                continue
        self.screen.show(error_block("the live feed could not be restored: the console stops"))
        return None

    async def _catch_up(self) -> None:
        """After a reconnect: the new socket follows the taken conversations again (the read binds it), and
        what was said meanwhile is shown."""
        for cid in list(self.taken):
            try:
                data = await self.api.conversation(cid, self.feed.socket_id)
            except CaptivateChatError as exc:
                self.screen.show(error_block(exc))
                continue
            if data.get("state") != "human" or (self.me is not None and data.get("human_agent") != self.me):
                self._drop(cid)
                self.screen.show(system_block(f"[{short(cid)} is no longer yours: {data.get('state')}]"))
                continue
            for entry in data.get("transcript") or []:
                if isinstance(entry.get("seq"), int) and entry["seq"] > self.taken[cid]:
                    payload = {"conversation_id": cid, "content": entry.get("content"), "seq": entry["seq"]}
                    await self.on_event(
                        FeedEvent(SENDERS.get(str(entry.get("from")), "system_message"), payload)
                    )

    # commands ---------------------------------------------------------------------------------------

    async def resolve(self, prefix: str, among: Iterable[str] | None = None) -> str:
        """The conversation an id or prefix names: among ``among``, else the waiting and live ones (a full id
        names any conversation)."""
        if not prefix:
            raise UsageError("which conversation? give its id (a prefix is enough)")
        wanted = prefix.lower()
        for attempt in range(2):
            pool = (
                list(among)
                if among is not None
                else [*self.known, *(c for c in self.taken if c not in self.known)]
            )
            matches = [c for c in pool if c.lower().startswith(wanted)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                listed = ", ".join(short(c) for c in matches[:5])
                raise UsageError(
                    f"{prefix} matches {len(matches)} conversations ({listed}): type more of the id"
                )
            if among is not None or attempt:
                break
            self.known = {str(c["conversation_id"]): c for c in await self.api.conversations()}
        if among is not None:
            raise UsageError(f"you have no conversation {prefix} (/list marks yours with +)")
        if len(prefix) >= 32:
            return prefix  # a full id: any conversation of the channel (an AI one can be taken too)
        raise UsageError(
            f"no waiting or live conversation starts with {prefix} (/list shows them; a full id names any)"
        )

    async def take(self, arg: str) -> None:
        cid = await self.resolve(arg)
        if cid in self.taken:
            self.current = cid
            self.screen.show(system_block(f"[{short(cid)} is already yours: it is now the current one]"))
            return
        try:
            record = await self.api.take(cid, self.feed.socket_id)
        except ProtocolError as exc:
            if exc.error_code != 409:
                raise
            data = await self.api.conversation(cid)
            owner = data.get("human_agent")
            if data.get("state") == "human" and owner and owner == self.me:  # ours, from an earlier run
                data = await self.api.conversation(cid, self.feed.socket_id)  # follow it again
                self.taken[cid], self.current = int(data.get("last_seq") or 0), cid
                self.screen.show(
                    system_block(f"[{short(cid)} is live with you already: it is now the current one]")
                )
                return
            if data.get("state") == "human":
                raise UsageError(
                    f"{short(cid)} is already taken by {owner or 'another human'} (409)"
                ) from None
            raise UsageError(f"cannot take {short(cid)}: it is {data.get('state')} (409)") from None
        self.me = record.get("human_agent") or self.me  # the token's label: who we are to the gateway
        self.known[cid] = record
        self.taken[cid], self.current = int(record.get("last_seq") or 0), cid
        self.screen.show(
            system_block(
                f"[you took {short(cid)} (user {record.get('user_id')}) as {record.get('human_agent')}: "
                "plain lines go to this user; /end hands it back to the AI]"
            )
        )
        data = await self.api.conversation(cid)
        for block in context_blocks(data):
            self.screen.show(block)

    async def end(self, arg: str) -> None:
        cid = await self.resolve(arg) if arg else self.current
        if cid is None:
            raise UsageError("no current conversation to end (/end ID)")
        seen, was_current = self.taken.get(cid), self.current == cid
        self._drop(cid)  # first: the feed's echo of the end is not news to this console
        try:
            await self.api.end(cid)
        except CaptivateChatError as exc:
            gone = isinstance(exc, ProtocolError) and exc.error_code in (404, 409)
            if seen is not None and not gone:  # still ours (a later queue update says otherwise)
                self.taken[cid] = seen
                self.current = cid if was_current else self.current
            raise
        self.known.pop(cid, None)
        now = f"; current: {short(self.current)}" if self.current else ""
        self.screen.show(system_block(f"[{short(cid)} ended: the AI agent answers again{now}]"))

    async def say(self, text: str) -> None:
        cid = self.current
        if cid is None:
            raise UsageError("no current conversation: /take ID first (/list shows who is waiting)")
        try:
            async with self._sending:
                sent = await self.api.send(cid, text, self.feed.socket_id)
                self.own.add(str(sent.get("message_id")))
        except ProtocolError as exc:
            if exc.error_code == 409:
                self._drop(cid)
                raise UsageError(
                    f"cannot send to {short(cid)}: it is no longer yours ({exc.error_desc})"
                ) from None
            raise
        if not self.screen.interactive:  # typed lines are on a terminal already, not in a log of piped input
            self.screen.show(Block("agent", text.splitlines() or [""], f"agent {short(cid)}> "))

    async def command(self, name: str, arg: str) -> bool:
        if name == "/quit":
            return False
        if name == "/help":
            self.screen.show(Block("info", [f"{n:<11} {what}" for n, what in COMMANDS.items()]))
        elif name == "/list":
            self.show_listing(await self.api.conversations())
        elif name == "/take":
            await self.take(arg)
        elif name == "/open":
            for block in conversation_blocks(await self.api.conversation(await self.resolve(arg))):
                self.screen.show(block)
        elif name == "/switch":
            self.current = await self.resolve(arg, self.taken)
            self.screen.show(system_block(f"[current: {short(self.current)}]"))
        elif name == "/end":
            await self.end(arg)
        else:
            raise UsageError(f"unknown command {name} (/help lists them)")
        return True

    async def handle(self, line: str) -> bool:
        """Run one input line; False once the agent asked to quit. Errors are shown, never raised."""
        text = line.strip()
        if not text:
            return True
        try:
            if text.startswith("/"):
                name, _, arg = text.partition(" ")
                return await self.command(name.lower(), arg.strip())
            await self.say(text)
        except UsageError as exc:
            self.screen.show(Block("error", [f"[{exc}]"]))
        except NotFoundError as exc:
            self.screen.show(Block("error", [f"[conversation not found (404): {exc.error_desc}]"]))
        except AuthenticationError as exc:
            self.screen.show(Block("error", [f"[the agent token was refused ({exc.error_code}): revoked?]"]))
        except CaptivateChatError as exc:
            self.screen.show(error_block(exc))
        return True

    async def read_loop(self, read: LineReader) -> int:
        while True:
            line = await read()
            if line is None or not await self.handle(line):
                return 0

    async def run(self, read: LineReader) -> int:
        """Read and show until ``/quit`` or the end of input (0), or until the live feed is lost for good (1)."""
        following = asyncio.create_task(self.follow())
        reading = asyncio.create_task(self.read_loop(read))
        done, _ = await asyncio.wait({following, reading}, return_when=asyncio.FIRST_COMPLETED)
        self.quitting = True
        if reading in done:
            await self.feed.close()
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            if self.taken:
                ids = ", ".join(short(c) for c in self.taken)
                self.screen.show(
                    system_block(f"[still live with you: {ids}; their users wait until the chat is ended]")
                )
            return reading.result()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        if following.exception() is not None:
            self.screen.show(error_block(f"the console stopped: {following.exception()!r}"))
            return 1
        return following.result()
