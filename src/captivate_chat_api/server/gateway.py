"""The gateway's parts wired together; created in the app's lifespan and kept on ``app.state.gateway``."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from .agents import Agent
from .agents.runner import AgentRunner
from .auth import HUMAN_ROLES, Authenticator
from .broker import Broker, broker_from_url, default_namespace
from .broker.memory import MemoryBroker
from .broker.relay import Relay
from .handlers import Handlers
from .hub import CLOSE_POLICY_VIOLATION, Hub
from .keys import display_prefix, hash_key
from .limits import Limits
from .livechat import LiveChat
from .metrics import Metrics
from .settings import Settings
from .store import Channel, Store, store_from_url
from .store.faults import FaultLog
from .timeline import Timeline

log = logging.getLogger("captivate_chat_api.server")


@dataclass
class Gateway:
    settings: Settings
    store: Store
    hub: Hub
    timeline: Timeline
    runner: AgentRunner
    livechat: LiveChat
    auth: Authenticator
    handlers: Handlers
    limits: Limits
    metrics: Metrics
    relay: Relay
    broker: Broker | None = None
    faults: FaultLog = field(default_factory=FaultLog)
    """Store faults answered 503/507, one log line per episode (readiness reads it too)."""
    _revalidation: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls, settings: Settings, agent: Agent | None = None, *, metrics: Metrics | None = None
    ) -> Gateway:
        """Wire the parts; ``agent``, when given, answers for every channel (embedding, tests)."""
        metrics = metrics or Metrics()
        store = store_from_url(
            settings.database,
            synchronous=settings.sqlite_synchronous,
            busy_timeout=settings.sqlite_busy_timeout,
            connect_timeout=settings.pg_connect_timeout,
            statement_timeout=settings.pg_statement_timeout,
            acquire_timeout=settings.pg_acquire_timeout,
        )
        hub = Hub(
            max_outbound_frame_bytes=settings.max_outbound_frame_bytes,
            message_link_base=lambda: settings.base_url,
        )
        metrics.watch_sockets(hub.connections)
        timeline = Timeline(store, hub, metrics=metrics)
        livechat = LiveChat(timeline)
        limits = Limits(
            settings.rate_per_socket,
            settings.burst_per_socket,
            settings.rate_per_key,
            settings.burst_per_key,
            in_flight_per_key=settings.in_flight_per_key,
            in_flight_total=settings.in_flight_total,
        )
        runner = AgentRunner(
            timeline,
            livechat,
            timeout=settings.agent_timeout,
            agent=agent,
            metrics=metrics,
            max_metadata_bytes=settings.max_metadata_bytes,
            base_url=lambda: settings.base_url,
            admission=limits.admission,  # agent turns take the tenant's slots too
        )
        auth = Authenticator(store, settings.auth_cache_seconds)
        namespace = settings.broker_namespace or default_namespace(settings.database)
        broker = broker_from_url(settings.broker, namespace) if settings.broker else MemoryBroker()
        relay = Relay(hub, store, broker, metrics=metrics)
        handlers = Handlers(
            store,
            hub,
            timeline,
            runner,
            auth,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_user_info_bytes=settings.max_user_info_bytes,
            starts_per_minute=settings.starts_per_minute_per_key,
            metrics=metrics,
        )
        return cls(
            settings,
            store,
            hub,
            timeline,
            runner,
            livechat,
            auth,
            handlers,
            limits,
            metrics,
            relay,
            broker=broker if settings.broker else None,
        )

    async def start(self) -> None:
        await self.store.open()
        for key in self.settings.api_keys:
            await register_key(self.store, key)
        await self.relay.start(self.timeline.subscribe)
        if self.settings.revalidate_seconds > 0:
            self._revalidation = asyncio.get_running_loop().create_task(self._revalidate_forever())

    async def _revalidate_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.revalidate_seconds)
            try:
                await self.revalidate()
            except Exception:
                log.exception("revalidating live sockets failed")

    async def revalidate(self) -> int:
        """Close every live socket whose key or agent token was revoked (or deleted); returns how many."""
        closed = 0
        verdicts: dict[tuple[str, str], bool] = {}
        for connection in self.hub.connections():
            credential = connection.credential
            if credential is None:
                continue
            verdict = verdicts.get((connection.role, credential))
            if verdict is None:
                if connection.role == "client":
                    channel = await self.store.channel_for_key_hash(credential)
                    verdict = channel is not None and channel.id == connection.channel.id
                else:  # a live-chat socket's token may be a human or a supervisor one
                    roles = HUMAN_ROLES if connection.role == "human" else (connection.role,)
                    found = None
                    for role in roles:
                        found = found or await self.store.channel_for_agent_token(credential, role)
                    verdict = found is not None and found[0].id == connection.channel.id
                verdicts[(connection.role, credential)] = verdict
            if not verdict:
                self.auth.forget(credential)  # refused from now on, not only after the cache expires
                closed += 1
                asyncio.get_running_loop().create_task(
                    connection.close(CLOSE_POLICY_VIOLATION, "credential revoked")
                )
        return closed

    async def stop(self) -> None:
        if self._revalidation is not None:
            self._revalidation.cancel()
        await self.hub.close_all()
        await self.runner.drain(self.settings.shutdown_grace_seconds)
        await self.runner.cancel()  # what did not finish within the grace period (its store write included)
        try:
            await asyncio.wait_for(self.relay.close(), 3.0)
        except TimeoutError:
            log.warning("the broker did not close within 3 s; leaving it")
        await self.store.close()


async def register_key(store: Store, key: str, name: str | None = None) -> Channel | None:
    """Make ``key`` valid as its own channel, unless it is known already (then keep its channel)."""
    digest = hash_key(key)
    if await store.key_exists(digest):
        return await store.channel_for_key_hash(digest)
    channel = await store.create_channel_with_key(
        name or f"channel {display_prefix(key)}", digest, display_prefix(key)
    )
    log.info("registered API key %s as channel %s", display_prefix(key), channel.id)
    return channel
