"""Type detection from the bytes and text extraction: PDF, DOCX, XLSX, PPTX, CSV/TXT/Markdown/HTML/JSON,
PNG/JPEG (OCR). Runs only inside an extraction worker process (:mod:`.worker`), never on the event loop.

A file that is not what it claims, is damaged, or would need too much (pages, unzipped bytes, pixels)
raises :class:`ExtractionRefused` with the HTTP status and a sentence for the user.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

PDF, DOCX, XLSX, PPTX = (
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
)
PNG, JPEG = "image/png", "image/jpeg"
CSV, TXT, MARKDOWN, HTML, JSON = "text/csv", "text/plain", "text/markdown", "text/html", "application/json"
ALL_TYPES = (PDF, DOCX, XLSX, PPTX, CSV, TXT, MARKDOWN, HTML, JSON, PNG, JPEG)
_OOXML = {"word/document.xml": DOCX, "xl/workbook.xml": XLSX, "ppt/presentation.xml": PPTX}
_TEXT_EXTENSIONS = {
    ".csv": CSV,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".json": JSON,
}


class ExtractionRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Limits:
    max_pages: int = 2000
    max_unzipped_bytes: int = 200 * 1024 * 1024
    max_zip_ratio: float = 200.0
    max_pixels: int = 40_000_000
    max_text_chars: int = 2_000_000


def detect(path: Path, filename: str) -> str:
    """The file's type from its bytes (the name only tells text formats apart); 415 for anything else."""
    with path.open("rb") as f:
        head = f.read(8192)
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            raise ExtractionRefused(422, "the file is a damaged or truncated ZIP/Office document") from None
        for member, kind in _OOXML.items():
            if member in names:
                return kind
        raise ExtractionRefused(415, "unsupported file type: a ZIP archive that is not DOCX, XLSX or PPTX")
    if b"\x00" in head:
        raise ExtractionRefused(
            415, "unsupported file type (binary data that is not PDF, Office or PNG/JPEG)"
        )
    try:
        sample = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut by the 8 KiB boundary
            raise ExtractionRefused(415, "unsupported file type: not UTF-8 text nor a known format") from None
        sample = head[: exc.start].decode("utf-8")
    suffix = Path(filename).suffix.lower()
    if suffix in _TEXT_EXTENSIONS:
        return _TEXT_EXTENSIONS[suffix]
    lowered = sample.lstrip().lower()
    if lowered.startswith(("<!doctype html", "<html")):
        return HTML
    if lowered.startswith(("{", "[")):
        return JSON
    return TXT


def _check_zip(path: Path, limits: Limits) -> None:
    """Refuse a zip bomb before any library inflates it."""
    with zipfile.ZipFile(path) as z:
        total = 0
        for info in z.infolist():
            total += info.file_size
            if (
                info.compress_size
                and info.file_size / info.compress_size > limits.max_zip_ratio
                and info.file_size > 1 << 20
            ):
                raise ExtractionRefused(
                    422, f"the document looks like a zip bomb ({info.filename} inflates too far)"
                )
        if total > limits.max_unzipped_bytes:
            raise ExtractionRefused(
                422, f"the document inflates to {total} bytes (limit {limits.max_unzipped_bytes})"
            )


def _pdf(path: Path, limits: Limits) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        declared = _declared_pages(reader)
        if declared is not None and declared > limits.max_pages:  # refused before the page tree is walked
            raise ExtractionRefused(422, f"the PDF has {declared} pages (limit {limits.max_pages})")
        count = len(reader.pages)
        if count > limits.max_pages:
            raise ExtractionRefused(422, f"the PDF has {count} pages (limit {limits.max_pages})")
        return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExtractionRefused(422, f"the PDF is damaged or truncated ({type(exc).__name__})") from None


def _declared_pages(reader: Any) -> int | None:
    """The page count the PDF's page tree declares (its root's ``/Count``), read without walking the tree:
    pypdf's ``len(reader.pages)`` builds an object per page, seconds of CPU for 100,000 of them. ``None``
    when it is missing or not a number (the walk decides then, as it does for a count that lies low)."""
    try:
        count = reader.trailer["/Root"]["/Pages"]["/Count"]
    except Exception:  # noqa: BLE001  a damaged tree: the walk that follows says how
        return None
    return count if isinstance(count, int) else None


def _docx(path: Path, limits: Limits) -> str:
    _check_zip(path, limits)  # before the library is even imported: a bomb costs a read of the zip index
    import docx

    document = docx.Document(str(path))
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append("\t".join(cell.text for cell in row.cells))
    return "\n".join(lines).strip()


def _xlsx(path: Path, limits: Limits) -> str:
    _check_zip(path, limits)
    import openpyxl

    handle = path.open("rb")  # a file object: openpyxl refuses a path whose suffix is not .xlsx
    book = openpyxl.load_workbook(handle, read_only=True, data_only=True)
    out = []
    try:
        for sheet in book.worksheets:
            out.append(f"## {sheet.title}")
            for row in sheet.iter_rows(values_only=True):
                if any(v is not None for v in row):
                    out.append(",".join("" if v is None else str(v) for v in row))
    finally:
        book.close()
        handle.close()
    return "\n".join(out).strip()


def _pptx(path: Path, limits: Limits) -> str:
    _check_zip(path, limits)
    from pptx import Presentation

    out = []
    for number, slide in enumerate(Presentation(str(path)).slides, start=1):
        out.append(f"## Slide {number}")
        for shape in slide.shapes:
            if getattr(shape, "has_text_frame", False) and shape.text_frame.text.strip():
                out.append(shape.text_frame.text.strip())
    return "\n".join(out).strip()


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def _text(path: Path, kind: str, limits: Limits) -> str:
    with path.open("rb") as f:
        raw = f.read(limits.max_text_chars * 4)
    text = raw.decode("utf-8", errors="replace")
    if kind == HTML:
        parser = _TextOfHtml()
        parser.feed(text)
        return "\n".join(parser.parts)
    if kind == CSV:
        return "\n".join(",".join(row) for row in csv.reader(io.StringIO(text)))
    if kind == JSON:
        try:
            return json.dumps(json.loads(text), ensure_ascii=False, indent=2)
        except ValueError:
            return text
    return text


def _image(path: Path, limits: Limits) -> str:
    import warnings

    from PIL import Image

    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > limits.max_pixels:
                    raise ExtractionRefused(
                        422, f"the image has {image.width}x{image.height} pixels (limit {limits.max_pixels})"
                    )
                image.load()  # every pixel decodes: a damaged or truncated image is refused here
                # tesseract reads the file itself (no second encode of every pixel, a JPEG not recompressed);
                # an image with an alpha channel goes as the pixels pytesseract puts on white for it
                return _ocr(image if "A" in image.getbands() else str(path))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ExtractionRefused(422, "the image is a decompression bomb (too many pixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ExtractionRefused(422, f"the image is damaged or truncated ({exc})") from None


def _ocr(image: Any) -> str:
    import pytesseract

    try:
        return str(pytesseract.image_to_string(image)).strip()
    except pytesseract.TesseractNotFoundError:
        raise ExtractionRefused(
            501, "OCR needs the tesseract-ocr program (e.g. apt-get install tesseract-ocr)"
        ) from None


_EXTRACTORS = {PDF: _pdf, DOCX: _docx, XLSX: _xlsx, PPTX: _pptx, PNG: _image, JPEG: _image}


def extract(
    path: Path, filename: str, limits: Limits, allowed: tuple[str, ...] = ALL_TYPES
) -> dict[str, Any]:
    """``{type, text}`` of the file at ``path``."""
    kind = detect(path, filename)
    if kind not in allowed:
        raise ExtractionRefused(415, f"file type {kind} is not allowed on this gateway")
    extractor = _EXTRACTORS.get(kind)
    try:
        text = extractor(path, limits) if extractor else _text(path, kind, limits)
    except ExtractionRefused:
        raise
    except MemoryError:
        raise ExtractionRefused(422, "the file needs more memory to read than a file may use") from None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise ExtractionRefused(
            422, f"the file is damaged or not a valid {kind} ({type(exc).__name__})"
        ) from None
    return {"type": kind, "text": text[: limits.max_text_chars]}
