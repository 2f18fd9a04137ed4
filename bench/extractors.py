"""Text extraction libraries compared (not a test): the ones the gateway uses against ``markitdown``.

Run from the repository root; markitdown is not a dependency, so it runs in a venv of its own::

    .venv/bin/python bench/extractors.py ours /tmp/extract-bench          # makes the files, times ours
    python3 -m venv /tmp/mk && /tmp/mk/bin/pip install 'markitdown[pdf,docx,xlsx,pptx]'
    /tmp/mk/bin/python bench/extractors.py markitdown /tmp/extract-bench   # times markitdown on the same files

Each prints the import time, then per file the mean of 5 in-process extractions, the text length and
whether the known word was found.
"""

from __future__ import annotations

import importlib
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("p50.pdf", "s.docx", "s.xlsx", "s.pptx")
WORD = "Zanzibarite"


def make(folder: Path) -> None:
    sys.path[:0] = [str(ROOT / "tests" / "files"), str(ROOT / "bench")]
    import samples

    from files import pdf_of_pages

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "p50.pdf").write_bytes(pdf_of_pages(50))
    (folder / "s.docx").write_bytes(samples.docx())
    (folder / "s.xlsx").write_bytes(samples.xlsx())
    (folder / "s.pptx").write_bytes(samples.pptx())


def timed(label: str, folder: Path, convert: Any) -> None:
    for name in NAMES:
        convert(folder / name)
        started = time.perf_counter()
        for _ in range(5):
            text = convert(folder / name)
        mean = (time.perf_counter() - started) / 5
        print(f"{label} {name}: {mean * 1000:.1f} ms, {len(text)} chars, word found: {WORD in text}")


def main() -> None:
    which, folder = sys.argv[1], Path(sys.argv[2])
    started = time.perf_counter()
    if which == "ours":
        for module in (
            "pypdf",
            "docx",
            "openpyxl",
            "pptx",
            "PIL.Image",
            "captivate_chat_api.server.files.extract",
        ):
            importlib.import_module(
                module
            )  # the readers, as a worker loads them (before make() imports some)
        print(f"ours import: {(time.perf_counter() - started) * 1000:.0f} ms")
        make(folder)
        from captivate_chat_api.server.files.extract import Limits, extract

        timed("ours", folder, lambda path: extract(path, path.name, Limits())["text"])
    else:
        warnings.simplefilter("ignore")
        from markitdown import MarkItDown

        converter = MarkItDown()
        print(f"markitdown import: {(time.perf_counter() - started) * 1000:.0f} ms")
        timed("markitdown", folder, lambda path: converter.convert(str(path)).text_content)


if __name__ == "__main__":
    main()
