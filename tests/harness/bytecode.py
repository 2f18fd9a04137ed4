"""The tree's bytecode, written once by the xdist controller before its workers and fork servers start.

In a fresh clone there is no ``__pycache__`` yet, so every xdist worker compiles the package and rewrites
(pytest's assertion rewriting) and compiles every test module as it collects, all at the same time, and the
fork servers compile the package too: a cold collection costs a worker ~3.5 CPU-s more than a warm one, ~14
CPU-s on 2 cores before the first test. ``precompile`` does that work once, in the controller, and writes
the same files the workers would (pytest's rewritten ``.pyc`` for test modules and conftests, ordinary
``.pyc`` for the rest); when they are up to date it only reads and compares (a few milliseconds).
"""

from __future__ import annotations

import compileall
import fnmatch
import sys
from pathlib import Path

import pytest


def precompile_package(root: Path) -> None:
    """Ordinary bytecode for every module under ``root`` (``compileall``, as an import would write it)."""
    if not sys.dont_write_bytecode:
        compileall.compile_dir(root, quiet=2, workers=1)


def precompile_tests(config: pytest.Config, tests: Path) -> None:
    """Test modules and conftests as pytest's assertion rewriting caches them; the tests' other modules
    (the harness, kits, agents) as ordinary bytecode. Nothing is written if pytest's internals moved."""
    if sys.dont_write_bytecode:
        return
    try:
        from _pytest.assertion.rewrite import PYC_TAIL, _read_pyc, _rewrite_test, _write_pyc, get_cache_dir
        from _pytest.assertion.rewrite import assertstate_key as state_key
    except ImportError:  # another pytest: each process compiles what it imports, as before
        return
    state = config.stash.get(state_key, None)
    patterns = [*config.getini("python_files"), "conftest.py"]
    for path in sorted(tests.rglob("*.py")):
        if "__pycache__" in path.parts or any(part.startswith(".") for part in path.parts):
            continue
        if state is None or not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            compileall.compile_file(path, quiet=2)
            continue
        cache = get_cache_dir(path)
        pyc = cache / (path.name[:-3] + PYC_TAIL)
        if _read_pyc(path, pyc) is not None:
            continue
        try:
            source_hash, code = _rewrite_test(path, config)
        except SyntaxError:  # collection reports it
            continue
        cache.mkdir(exist_ok=True)
        _write_pyc(state, code, source_hash, pyc)
