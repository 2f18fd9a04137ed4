"""The child side of the suite's two fork servers (``forkserver.py`` for gateways, ``cli_fork.py`` for
start-up errors): a forked process becomes ``captivate-chat ARGS`` and ends with ``main()``'s exit code.

Their server scripts import it (``PRELUDE``) before they import the CLI, then drop this folder from
``sys.path`` again, so that a child sees the path a fresh interpreter would.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

PRELUDE = (
    "import sys\n"
    f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
    "from cli_child import become_cli, become_module, become_script, warm_up\n"
    "del sys.path[0]\n"
)
"""The first lines of a fork server's script: ``become_cli`` imported, the path as it was."""


WARM = (
    # what a gateway imports once it starts serving (uvicorn's protocols and loop, the stores, the brokers)
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "captivate_chat_api.server.logs",
    "captivate_chat_api.server.snippets",
    "captivate_chat_api.server.store.sqlite",
    "captivate_chat_api.server.store.postgres",
    "captivate_chat_api.server.broker.redis",
    "rich._emoji_codes",
)

CLIENT_WARM = (
    # what `chat` and `console` import once they connect (httpx's transport: httpcore, h11, anyio), ~0.13 CPU-s
    # a child otherwise
    "anyio",
    "anyio._backends._asyncio",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "anyio.to_thread",
    "certifi",
    "h11",
    "httpcore",
    "httpcore._backends.anyio",
    "httpcore._backends.auto",
    "pydantic.type_adapter",
    "typer._adapters",
    "typer._click.decorators",
)


def warm_up(preload: list[str]) -> None:
    """In a fork server, before it forks: import ``preload``, what its children would import (each
    child then imports none of it again), then move the whole heap out of the collector's sight
    (``gc.freeze``, as the CPython docs advise before forking), so the collection a gateway makes after its
    start-up (``settle_heap``) walks only what the child made, not every module again."""
    import gc
    import importlib

    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:  # an extra that is not installed: its gateways fail as they would anyway
            pass
    gc.collect()
    gc.freeze()


def become_cli(job: dict[str, Any], argv0: str, base_path: list[str] | None = None) -> NoReturn:
    """Run the CLI with the job's arguments, exactly its environment and its working directory, then exit
    with the code ``captivate-chat`` would (``base_path``: put the working directory first on it, as
    ``python -m`` does)."""
    from captivate_chat_api import cli

    _become(job, argv0, lambda: [os.getcwd(), *base_path[1:]] if base_path is not None else None, cli.main)


def become_script(job: dict[str, Any], base_path: list[str]) -> NoReturn:
    """Run the Python file ``job["script"]`` as ``python FILE ARGS`` would: its folder first on the path,
    ``__name__ == "__main__"``, the job's arguments, environment and working directory, its exit code."""
    import runpy

    script = os.path.abspath(job["script"])
    _become(
        job,
        script,
        lambda: [os.path.dirname(script), *base_path[1:]],
        lambda: runpy.run_path(script, run_name="__main__"),
    )


def become_module(job: dict[str, Any], base_path: list[str]) -> NoReturn:
    """Run the module ``job["module"]`` as ``python -m MODULE ARGS`` would: the working directory first on
    the path, ``__name__ == "__main__"`` (its ``__main__`` submodule for a package), the job's arguments,
    environment and working directory, its exit code."""
    import runpy

    _become(
        job,
        job["module"],  # runpy sets argv[0] to the module's file, as `python -m` does
        lambda: [os.getcwd(), *base_path[1:]],
        lambda: runpy.run_module(job["module"], run_name="__main__", alter_sys=True),
    )


def _become(job: dict[str, Any], argv0: str, path: Any, main: Any) -> NoReturn:
    code = 1
    try:
        os.environ.clear()
        os.environ.update(job["env"])
        if job["cwd"]:
            os.chdir(job["cwd"])
        new_path = path()
        if new_path is not None:
            sys.path[:] = new_path
        sys.argv = [argv0, *job["args"]]
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            sys.stderr.write(f"{exc.code}\n")
    except BaseException:  # noqa: BLE001 -- a crash is printed, as Python would, and exits 1
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):  # a closed pipe: nothing left to say
                stream.flush()
        os._exit(code)
