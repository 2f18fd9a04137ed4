"""What a webhook agent costs per turn, against the in-process demo agent. A benchmark, not a test.

Run from the repository root (needs the ``test`` extra: ``captivate-ai-api``)::

    .venv/bin/python bench/webhook_overhead.py              # 100 measured turns, 10 warm-up
    .venv/bin/python bench/webhook_overhead.py --turns 300

Two measurements, all on loopback, one turn in flight at a time:

1. **gateway**: ``captivate-chat serve`` in a subprocess with two channels, one on the demo agent and one on
   ``webhook:`` the test agent (tests/server/agents/webhook_agent_app.py: FastAPI + ``captivate-ai-api``,
   signature checked) in its own process. The timer runs from POSTing a ``user_message`` until its
   ``bot_message`` arrives on the WebSocket.
2. **agent call alone**: ``WebhookAgent(url, secret)(request)`` against the same agent, in this process,
   against ``DemoAgent()(request)``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "server" / "agents")]

from test_webhook import SECRET, AgentProcess, set_channel

from captivate_chat_api.protocol import ChatRequest
from captivate_chat_api.server.agents import DemoAgent
from captivate_chat_api.server.agents.webhook import WebhookAgent
from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


async def gateway_turns(gateway: GatewayProcess, key: str, turns: int, warmup: int) -> list[float]:
    async with WireClient(gateway.http_url, gateway.ws_url, key) as user:
        cid = await user.start("bench")
        samples = []
        for index in range(warmup + turns):
            started = time.perf_counter()
            await user.say(cid, f"m{index}")
            await user.expect("bot_message", lambda p, i=index: p["content"]["text"].endswith(f"m{i}"))
            if index >= warmup:
                samples.append(time.perf_counter() - started)
            user.frames.clear()
        return samples


async def direct_calls(agent: object, turns: int, warmup: int) -> list[float]:
    samples = []
    for index in range(warmup + turns):
        request = ChatRequest(session_id="bench", user_input=f"m{index}")
        started = time.perf_counter()
        await agent(request)  # type: ignore[operator]
        if index >= warmup:
            samples.append(time.perf_counter() - started)
    return samples


async def main(turns: int, warmup: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "gw.db"
        demo_key, webhook_key = new_key(), new_key()
        env = {"CAPTIVATE_ACCESS_LOG": "false", "CAPTIVATE_LOG_LEVEL": "warning"}
        gateway = GatewayProcess(database, [demo_key, webhook_key], env=env).start()
        agent = AgentProcess({"AGENT_SECRET": SECRET}).start()
        try:
            await set_channel(
                database, webhook_key, agent=f"webhook:{agent.url}/agent", webhook_secret=SECRET
            )
            demo = await gateway_turns(gateway, demo_key, turns, warmup)
            webhook = await gateway_turns(gateway, webhook_key, turns, warmup)
            client = WebhookAgent(f"{agent.url}/agent", SECRET)
            try:
                direct_webhook = await direct_calls(client, turns, warmup)
            finally:
                await client.aclose()
            direct_demo = await direct_calls(DemoAgent(), turns, warmup)
        finally:
            agent.stop()
            gateway.stop()
    print(f"{turns} turns each (p50, ms)")
    print(f"  gateway round trip, demo agent      {p50_ms(demo):8.2f}")
    print(
        f"  gateway round trip, webhook agent   {p50_ms(webhook):8.2f}   (+{p50_ms(webhook) - p50_ms(demo):.2f})"
    )
    print(f"  agent call alone, demo              {p50_ms(direct_demo):8.3f}")
    print(f"  agent call alone, webhook           {p50_ms(direct_webhook):8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.warmup))
