"""``harness.bytecode``: the file the controller writes is the one pytest's rewriting import then loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.assertion.rewrite import PYC_TAIL, _read_pyc

from harness.bytecode import write_rewritten


def test_a_test_module_is_cached_rewritten_and_kept_when_current(
    pytestconfig: pytest.Config, tmp_path: Path
) -> None:
    source = tmp_path / "test_sample.py"
    source.write_text("def test_it():\n    values = [1, 2]\n    assert len(values) == 3\n")
    assert write_rewritten(pytestconfig, source)
    pyc = tmp_path / "__pycache__" / ("test_sample" + PYC_TAIL)
    code = _read_pyc(source, pyc)
    assert code is not None  # what the import hook reads instead of rewriting again
    namespace: dict[str, object] = {}
    exec(code, namespace)  # noqa: S102 - the cached module, run as the import hook runs it
    with pytest.raises(AssertionError) as failure:
        namespace["test_it"]()  # type: ignore[operator]
    assert "where 2 = len([1, 2])" in str(failure.value)  # pytest's rewritten assert, not a bare one

    written = pyc.stat().st_mtime_ns
    assert write_rewritten(pytestconfig, source)
    assert pyc.stat().st_mtime_ns == written  # up to date: read and compared, not written again
    source.write_text("def test_it():\n    assert True\n")
    assert write_rewritten(pytestconfig, source)
    assert _read_pyc(source, pyc) is not None  # the changed source was rewritten again
