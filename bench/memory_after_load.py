"""Memory after load: the gateway's RSS idle, with N WebSockets open (each started a conversation and sent
one message), and after they all closed. A benchmark, not a test. Run from the repository root::

    .venv/bin/python bench/memory_after_load.py                 # 4,000 sockets
    .venv/bin/python bench/memory_after_load.py --sockets 2000 --compression none

RSS is read from ``/proc/PID/status`` (VmRSS) of the ``captivate-chat serve`` subprocess (SQLite, access
log off). "after" is sampled 2 s and 15 s after the last socket closed. Loopback only, bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).parent))

from benchkit import bench_key, gateway, rss_mib


def frame(event_type: str, payload: dict[str, object]) -> str:
    return json.dumps(
        {"action": "sendMessage", "event": {"event_type": event_type, "event_payload": payload}}
    )


async def one(url: str, compression: str | None, opened: asyncio.Event, go: asyncio.Event) -> None:
    async with websockets.connect(url, compression=compression, max_size=2**22, open_timeout=60) as ws:
        await ws.recv()  # socket_connected
        await ws.send(frame("conversation_start", {"userId": secrets.token_hex(4)}))
        cid = None
        while cid is None:
            event = json.loads(await ws.recv())["event"]
            if event["event_type"] == "conversation_start_success":
                cid = event["event_payload"]["conversation_id"]
        await ws.send(
            frame("user_message", {"conversation_id": cid, "content": {"type": "text", "text": "hi"}})
        )
        while json.loads(await ws.recv())["event"]["event_type"] != "bot_message":
            pass
        opened.set()
        await go.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=4000)
    parser.add_argument("--compression", choices=["deflate", "none"], default="deflate")
    parser.add_argument("--rounds", type=int, default=1, help="open and close the sockets this many times")
    args = parser.parse_args()
    key = bench_key()
    env = {
        "CAPTIVATE_RATE_PER_KEY": "0",
        "CAPTIVATE_STARTS_PER_MINUTE_PER_KEY": "0",
        "CAPTIVATE_MAX_SOCKETS_PER_KEY": str(args.sockets + 10),
    }
    with gateway([key], env) as child:
        assert child.proc is not None
        proc = child.proc
        url = f"{child.ws_url}/dev?apiKey={key}"
        await asyncio.sleep(1.0)
        idle = rss_mib(proc.pid)
        compression = None if args.compression == "none" else "deflate"
        for round_ in range(args.rounds):
            go = asyncio.Event()
            tasks = []
            for start in range(0, args.sockets, 200):  # open in batches: loopback, bounded
                batch = [asyncio.Event() for _ in range(min(200, args.sockets - start))]
                tasks += [asyncio.create_task(one(url, compression, e, go)) for e in batch]
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in batch)), 120)
            peak = rss_mib(proc.pid)
            go.set()
            await asyncio.gather(*tasks)
            await asyncio.sleep(2.0)
            after2 = rss_mib(proc.pid)
            await asyncio.sleep(13.0)
            after15 = rss_mib(proc.pid)
            if args.rounds > 1:
                print(
                    f"round {round_ + 1}: open {peak:.1f} MiB, 15 s after close {after15:.1f} MiB",
                    flush=True,
                )
    per = (peak - idle) * 1024 / args.sockets
    print(
        f"{args.sockets} sockets ({args.compression}): RSS idle {idle:.1f} MiB, open {peak:.1f} MiB "
        f"({per:.0f} KiB per socket), 2 s after close {after2:.1f} MiB, 15 s after {after15:.1f} MiB "
        f"(retained {after15 - idle:.1f} MiB)"
    )


if __name__ == "__main__":
    asyncio.run(main())
