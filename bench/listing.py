"""Listings under a big user: 2,000 conversations with 15 KiB of metadata each, then 8 concurrent v1
listings, one v2 page, and another tenant's message meanwhile. A benchmark, not a test::

    .venv/bin/python bench/listing.py                     # 2,000 conversations
    .venv/bin/python bench/listing.py --conversations 500

Prints the v1 and v2 answer sizes and times, the gateway's RSS (``/proc/PID/status``) before and after the
8 concurrent v1 listings, and the other tenant's ``user_message`` POST time alone and during them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from benchkit import MESSAGE_PATH, bench_key, envelope, gateway, rss_mib


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=2000)
    args = parser.parse_args()
    keys = [bench_key() for _ in range(2)]
    env = {"CAPTIVATE_STARTS_PER_MINUTE_PER_KEY": "0", "CAPTIVATE_RATE_PER_KEY": "0"}
    with gateway(keys, env) as child:
        assert child.proc is not None
        proc, url = child.proc, child.http_url
        async with (
            httpx.AsyncClient(base_url=url, headers={"x-api-key": keys[0]}, timeout=120) as big,
            httpx.AsyncClient(base_url=url, headers={"x-api-key": keys[1]}, timeout=120) as other,
        ):
            pad = "m" * 15_000
            sem = asyncio.Semaphore(16)

            async def start(i: int) -> None:
                async with sem:
                    body = envelope("conversation_start", {"userId": "big", "metadata": {"pad": pad, "n": i}})
                    (await big.post(MESSAGE_PATH, json=body)).raise_for_status()

            await asyncio.gather(*(start(i) for i in range(args.conversations)))
            cid = (
                await other.post(MESSAGE_PATH, json=envelope("conversation_start", {"userId": "o"}))
            ).json()["conversation_id"]

            async def other_message(n: int) -> float:
                body = envelope(
                    "user_message", {"conversation_id": cid, "content": {"type": "text", "text": f"o{n}"}}
                )
                began = time.perf_counter()
                (await other.post(MESSAGE_PATH, json=body)).raise_for_status()
                return (time.perf_counter() - began) * 1000

            alone = [await other_message(n) for n in range(20)]
            began = time.perf_counter()
            v1 = await big.post(MESSAGE_PATH, json=envelope("get_user_conversations", {"userId": "big"}))
            v1_ms = (time.perf_counter() - began) * 1000
            began = time.perf_counter()
            v2 = await big.post(
                MESSAGE_PATH,
                json=envelope(
                    "get_user_conversations_v2",
                    {"userId": "big", "pagination": {"page": 50, "limit": 20}},
                ),
            )
            v2_ms = (time.perf_counter() - began) * 1000
            before = rss_mib(proc.pid)

            async def listings() -> None:
                await asyncio.gather(
                    *(
                        big.post(MESSAGE_PATH, json=envelope("get_user_conversations", {"userId": "big"}))
                        for _ in range(8)
                    )
                )

            task = asyncio.create_task(listings())
            during = []
            while not task.done():
                during.append(await other_message(len(during)))
            await task
            after = rss_mib(proc.pid)
    print(
        f"{args.conversations} conversations x 15 KiB metadata: v1 answer {len(v1.content) / 1e6:.1f} MB "
        f"({len(v1.json()['conversations'])} conversations) in {v1_ms:.0f} ms; v2 page 50 of 20: "
        f"{len(v2.content) / 1e3:.0f} KB in {v2_ms:.0f} ms"
    )
    print(
        f"RSS before 8 concurrent v1 listings {before:.1f} MiB, after {after:.1f} MiB; the other tenant's message "
        f"p50 {statistics.median(alone):.1f} ms alone, max {max(during):.1f} ms during them ({len(during)} samples)"
    )


if __name__ == "__main__":
    asyncio.run(main())
