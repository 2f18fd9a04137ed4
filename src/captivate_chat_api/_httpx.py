"""httpx, imported without its command-line client.

httpx 0.28's ``__init__`` imports ``httpx._main`` (the ``httpx`` command: click, rich and pygments) whenever
those happen to be installed, as they are with the server extra (typer brings click and rich): ~0.15 CPU-s
of every process that imports the SDK, for a command the SDK never runs. When the SDK is the first to import
httpx, ``httpx._main`` is hidden while httpx's ``__init__`` runs (so it takes its fallback ``main``, as
without those packages), then unhidden, and ``httpx.main`` imports the command when it is called (as
pydantic's httpx fork does upstream). Everything else of httpx is untouched; if httpx was imported already,
this only re-exports it.
"""

from __future__ import annotations

import sys

if "httpx" in sys.modules or "httpx._main" in sys.modules:
    import httpx
else:
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # ``from ._main import main`` fails fast
    try:
        import httpx
    finally:
        del sys.modules["httpx._main"]

    def _main() -> None:
        """httpx's own command line (``httpx.main``), imported when it runs."""
        from httpx._main import main

        main()

    httpx.main = _main  # type: ignore[assignment]  # (a click command there; called the same way)

__all__ = ["httpx"]
