"""The bytecode a test run needs, written once by the xdist controller before its workers start.

In a fresh clone (and a fresh venv, as in CI) the caches are empty, so every xdist worker compiles, all at
the same time, what it imports: pytest rewrites the asserts of the test modules and conftests, and of every
module of the packages it marks for rewriting (those of the installed pytest plugins: this package itself,
through its ``captivate_chat_api.testing`` plugin, hypothesis, anyio, xdist, ...), and caches the result in
a ``.pyc`` of its own. ``precompile_for_workers`` writes those same files once, in the controller, through
pytest's own rewrite-and-cache functions (a private API: with another pytest, nothing is written and each
process compiles for itself, as before), and ordinary bytecode for the tests' helper modules;
``precompile_package`` the ordinary bytecode children import (gateways, fork servers). Files that are up to
date are only read and compared.
"""

from __future__ import annotations

import compileall
import fnmatch
import importlib.util
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

try:  # pytest's own rewrite-and-cache functions (private): with another pytest nothing is written here
    from _pytest.assertion.rewrite import (
        PYC_TAIL,
        _read_pyc,
        _rewrite_test,
        _write_pyc,
        assertstate_key,
        get_cache_dir,
    )
except ImportError:  # each process then compiles what it imports, as before
    assertstate_key = None

NOT_IN_WORKERS = ("schemathesis",)
"""Packages pytest marks for rewriting that no test process imports (only the ``st`` child does: 385 modules)."""


def precompile_package(root: Path) -> None:
    """Ordinary bytecode for every module under ``root`` (``compileall``, as an import would write it)."""
    if not sys.dont_write_bytecode:
        compileall.compile_dir(root, quiet=2, workers=1)


def precompile_for_workers(config: pytest.Config, tests: Path) -> None:
    """Test modules and conftests as pytest rewrites and caches them, the tests' other modules (the harness,
    kits, agents) as ordinary bytecode, and every module of the packages pytest marks for rewriting."""
    if sys.dont_write_bytecode:
        return
    patterns = [*config.getini("python_files"), "conftest.py"]
    for path in _sources(tests):
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            compileall.compile_file(path, quiet=2)
        elif not write_rewritten(config, path):
            return  # not rewriting (--assert=plain), or another pytest
    marked = getattr(config.pluginmanager.rewrite_hook, "_must_rewrite", set())
    for name in sorted(set(marked) - set(NOT_IN_WORKERS)):
        for path in _module_files(name):
            write_rewritten(config, path)


def write_rewritten(config: pytest.Config, path: Path) -> bool:
    """Write ``path``'s module as pytest's rewriting import caches it (``__pycache__/NAME.<tag>-pytest-<version>.pyc``)
    unless that file is up to date. False if this pytest rewrites nothing or its internals moved."""
    state = None if assertstate_key is None else config.stash.get(assertstate_key, None)
    if state is None:  # --assert=plain, or another pytest
        return False
    cache = get_cache_dir(path)
    pyc = cache / (path.name[:-3] + PYC_TAIL)
    if _read_pyc(path, pyc) is not None:
        return True
    try:
        source_hash, code = _rewrite_test(path, config)
        cache.mkdir(exist_ok=True)
    except (SyntaxError, OSError):  # collection reports a syntax error; a read-only folder is skipped
        return True
    _write_pyc(state, code, source_hash, pyc)
    return True


def _module_files(name: str) -> Iterable[Path]:
    """The source files of top-level module or package ``name`` (found, not imported)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [path for folder in spec.submodule_search_locations for path in _sources(Path(folder))]
    return [Path(spec.origin)] if spec.origin and spec.origin.endswith(".py") else []


def _sources(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        if not any(part == "__pycache__" or part.startswith(".") for part in path.relative_to(root).parts):
            yield path
