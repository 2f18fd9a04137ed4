"""CPU per access line with the shipped logging (JSON lines to stderr), inside a running event loop.

A benchmark, not a test. Run from the repository root, stderr to a file or /dev/null::

    .venv/bin/python bench/log_lines.py src 20 2>/dev/null
    .venv/bin/python bench/log_lines.py /work/main/src 20 2>/dev/null   # another checkout, to compare

``SRC`` is the checkout's ``src`` directory, ``PER_ITERATION`` how many lines are logged in one event-loop
iteration (a loaded gateway answers many requests per iteration). Prints the process CPU per line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

LINES = 60_000


def main() -> None:
    src, per_iteration = sys.argv[1], int(sys.argv[2])
    sys.path.insert(0, src)
    from captivate_chat_api.server import logs

    logs.configure_logging("info", "json")
    access = logging.getLogger("captivate_chat_api.access")
    helper = getattr(logs, "log_access", None)
    path = "/api/custom-channel/sockets/message"

    async def run() -> float:
        count, cpu = 0, time.process_time()
        started = time.perf_counter()
        while count < LINES:
            for _ in range(per_iteration):
                if helper is not None:
                    helper("POST", path, 200, started)
                else:  # a checkout before log_access: the call the access log made there
                    access.info("%s %s %d %.1fms", "POST", path, 200, (time.perf_counter() - started) * 1000)
                count += 1
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        return (time.process_time() - cpu) / count * 1e6

    per_line = asyncio.run(run())
    print(
        f"{logs.__file__}: {per_line:.2f} µs CPU per line ({per_iteration} per iteration)",
        file=sys.__stdout__,
    )


if __name__ == "__main__":
    main()
