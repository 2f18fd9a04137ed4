"""Instructions per chat round trip of the gateway's core, counted by valgrind (callgrind): a figure that a
shared, noisy machine does not move, for an A/B of a small change.

A benchmark, not a test. Needs ``valgrind``. Run from the repository root::

    .venv/bin/python bench/instructions.py                            # this checkout
    .venv/bin/python bench/instructions.py --baseline-src ../main/src # and another one, in the same run

The work is ``bench/hotpath.py``'s round trip (routes -> handlers -> store -> hub -> agent turn, the real
``Gateway.build`` on SQLite with the demo agent, no sockets), but a fixed amount of it: ``--conversations``
conversations each make ``--trips`` round trips, all at once, then the process exits. Each checkout runs
twice under callgrind, with 2 and with ``--trips`` + 2 round trips per conversation; the difference of the
two totals over the difference of the trips is what one round trip costs (start-up, imports and the
conversations' creation cancel out). All threads count (the event loop's and the SQLite writer's), user
space only (no system calls' kernel time). The writer's batch sizes still depend on scheduling: two runs
of the same code differ by about 1 %.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
FEW = 2


async def drive(conversations: int, trips: int) -> None:
    """The fixed work (in the child process, under valgrind)."""
    sys.path.insert(0, str(HERE))
    from hotpath import Socket, bench_settings, envelope, open_conversation

    from captivate_chat_api.server.connection import Connection
    from captivate_chat_api.server.gateway import Gateway
    from captivate_chat_api.server.routes.ws import serve_frame

    keys = [f"cck_bench_{i:02d}_{'x' * 24}" for i in range(20)]
    settings = bench_settings(keys, "instructions-")
    gateway = Gateway.build(settings)
    await gateway.start()
    loop = asyncio.get_running_loop()
    work = []
    for index in range(conversations):
        key = keys[index % len(keys)]
        connection, socket, cid = await open_conversation(gateway, key, index)
        # the client's frames are made before the trips, for every count alike
        frames = [
            envelope(
                "user_message",
                {
                    "conversation_id": cid,
                    "content": {"type": "text", "text": f"m{n}"},
                    "client_msg_id": f"c{n}",
                },
                connection.socket_id,
            )
            for n in range(trips)
        ]
        work.append((key, connection, socket, frames))

    async def run(key: str, connection: Connection, socket: Socket, frames: list[str]) -> None:
        for text in frames:
            socket.answered = loop.create_future()
            await serve_frame(gateway, connection, key, text)
            await socket.answered

    await asyncio.gather(*(run(*w) for w in work))
    await gateway.stop()


def counted(src: Path | None, conversations: int, trips: int) -> int:
    """Instructions of one child process (callgrind's total)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    with tempfile.TemporaryDirectory(prefix="callgrind-") as folder:
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={folder}/out",
                sys.executable,
                __file__,
                "--child",
                str(conversations),
                str(trips),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise SystemExit(f"valgrind said: {result.stderr[-500:]}")
    return int(found.group(1))


def per_trip(src: Path | None, conversations: int, trips: int) -> float:
    with ThreadPoolExecutor(2) as pool:  # the two counts at once (valgrind runs one thread at a time)
        few, many = pool.map(lambda t: counted(src, conversations, t), (FEW, FEW + trips))
    return (many - few) / (conversations * trips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--trips", type=int, default=20, help="round trips per conversation (beyond 2)")
    parser.add_argument("--baseline-src", type=Path, help="also count another checkout's src directory")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        try:
            import uvloop

            uvloop.run(drive(*args.child))
        except ImportError:
            asyncio.run(drive(*args.child))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    print(
        f"{args.conversations} conversations x {args.trips} round trips, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    mine = per_trip(None, args.conversations, args.trips)
    print(f"  this checkout    {mine:12,.0f} instructions per round trip", flush=True)
    if args.baseline_src is not None:
        base = per_trip(args.baseline_src.resolve(), args.conversations, args.trips)
        print(f"  {args.baseline_src}  {base:12,.0f} instructions per round trip ({mine / base:.3f}x)")


if __name__ == "__main__":
    main()
