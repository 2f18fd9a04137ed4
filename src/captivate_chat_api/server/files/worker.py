"""An extraction worker process: ``python -m captivate_chat_api.server.files.worker MEMORY_BYTES``.

Reads one JSON job per line on stdin (``{path, filename, limits, allowed}``) and answers each on stdout with
one JSON line: ``{ok: false, status, error}``, or ``{ok: true, type, text_bytes: N}`` followed by N bytes,
the text already encoded as a JSON string literal (the gateway splices it into its answer: a 25 MiB text is
never parsed nor re-encoded on the gateway's event loop). Its address space is capped
with ``RLIMIT_AS`` so a file that needs too much memory fails here, not in the gateway, and it runs at a
lower CPU priority than the gateway (``SCHED_IDLE`` on Linux, else nice 19).
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any


def _cap_memory(limit: int) -> None:
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _background() -> None:
    """Extraction is background work: the gateway's event loop (and its chats) get the CPU first."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # Linux: runs only on otherwise idle CPU
    except (AttributeError, OSError):
        os.nice(19)


def handle(job: dict[str, Any]) -> dict[str, Any]:
    from .extract import ExtractionRefused, Limits, extract

    try:
        found = extract(Path(job["path"]), job["filename"], Limits(**job["limits"]), tuple(job["allowed"]))
        return {"ok": True, **found}
    except ExtractionRefused as exc:
        return {"ok": False, "status": exc.status, "error": exc.message}
    except MemoryError:
        return {"ok": False, "status": 422, "error": "the file needs more memory to read than a file may use"}
    except RecursionError:
        return {"ok": False, "status": 422, "error": "the file is nested too deeply to read"}
    except Exception as exc:  # noqa: BLE001  a library choking on a malformed file: the file's fault, said plainly
        return {"ok": False, "status": 422, "error": f"the file could not be read ({type(exc).__name__})"}


def main() -> None:
    _cap_memory(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    _background()
    import orjson

    out = sys.stdout.buffer
    for line in sys.stdin:
        if not line.strip():
            continue
        answer = handle(json.loads(line))
        text = orjson.dumps(answer.pop("text")) if answer["ok"] else b""
        out.write(orjson.dumps({**answer, "text_bytes": len(text)}) + b"\n")
        out.write(text)
        out.flush()


if __name__ == "__main__":
    main()
