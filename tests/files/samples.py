"""Real files made at test time, each holding a known word (PDF, DOCX, XLSX, PPTX, CSV, TXT, PNG, ...)."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

WORD = "Zanzibarite"
"""The known word each sample holds (and OCR reads back from the PNG)."""


def pdf(word: str = WORD, pages: int = 1) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4)
    for number in range(pages):
        page.setFont("Helvetica", 14)
        page.drawString(72, 760, f"Page {number + 1}: the word is {word}.")
        page.showPage()
    page.save()
    return out.getvalue()


def docx(word: str = WORD) -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    document.add_paragraph(f"The word is {word}.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "cell"
    table.rows[0].cells[1].text = "value"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx(word: str = WORD) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["name", "value"])
    sheet.append([word, 42])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def pptx(word: str = WORD) -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = f"Slide about {word}"
    box = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(4), Inches(1))
    box.text_frame.text = "second line"
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def png(word: str = WORD) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (900, 160), "white")
    draw = ImageDraw.Draw(image)
    draw.text((30, 40), word, fill="black", font=ImageFont.load_default(size=64))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def csv(word: str = WORD) -> bytes:
    return f"name,value\n{word},1\n".encode()


def txt(word: str = WORD) -> bytes:
    return f"plain text with {word} inside\n".encode()


def html(word: str = WORD) -> bytes:
    return f"<!doctype html><html><body><script>alert(1)</script><p>{word}</p></body></html>".encode()


SAMPLES = {
    "report.pdf": pdf,
    "letter.docx": docx,
    "sheet.xlsx": xlsx,
    "deck.pptx": pptx,
    "data.csv": csv,
    "notes.txt": txt,
    "scan.png": png,
}


def write_all(folder: Path) -> dict[str, Path]:
    """Every sample as a file in ``folder``: name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, make in SAMPLES.items():
        path = folder / name
        path.write_bytes(make())
        paths[name] = path
    return paths


# hostile files


def zip_bomb_docx() -> bytes:
    """A DOCX whose document part inflates to 1 GiB of zeros (about 1 MiB compressed).

    A real deflate stream, built cheaply: one MiB of zeros compressed and ended with a full flush (byte
    aligned, no back-reference across it), so every further MiB compresses to the same bytes; the stream is
    that block 1024 times and an empty final block. The zip's CRC-32 is the real one of 1 GiB of zeros.
    """
    mib = b"\0" * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert again == block  # what makes repeating the block the compression of the whole
    deflated = block * 1024 + compressor.flush()
    crc = zlib.crc32(mib)
    for doubled in range(10):  # 1 MiB -> 1 GiB: the CRC of the zeros twice over, without the 0.45 CPU-s read
        crc = crc32_combine(crc, crc, (1 << 20) << doubled)

    out, central = io.BytesIO(), io.BytesIO()
    parts = [("[Content_Types].xml", 0, b"<Types/>", zlib.crc32(b"<Types/>"), 8)]
    parts.append(("word/document.xml", 8, deflated, crc, 1 << 30))
    for name, method, data, checksum, size in parts:
        offset = out.tell()
        encoded = name.encode()
        sizes = struct.pack("<III", checksum, len(data), size)
        out.write(struct.pack("<IHHHHH", 0x04034B50, 20, 0, method, 0, 0x21) + sizes)
        out.write(struct.pack("<HH", len(encoded), 0) + encoded + data)
        central.write(struct.pack("<IHHHHHH", 0x02014B50, 20, 20, 0, method, 0, 0x21) + sizes)
        central.write(struct.pack("<HHHHHII", len(encoded), 0, 0, 0, 0, 0, offset) + encoded)
    start = out.tell()
    out.write(central.getvalue())
    out.write(
        struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(parts), len(parts), len(central.getvalue()), start, 0)
    )
    return out.getvalue()


def crc32_combine(first: int, second: int, second_length: int) -> int:
    """The CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's ``crc32_combine``, which
    Python's zlib does not expose): ``first`` run through ``second_length`` zero bytes in GF(2), by squaring."""

    def times(matrix: list[int], vector: int) -> int:
        total, row = 0, 0
        while vector:
            if vector & 1:
                total ^= matrix[row]
            vector >>= 1
            row += 1
        return total

    def square(matrix: list[int]) -> list[int]:
        return [times(matrix, matrix[n]) for n in range(32)]

    odd = [0xEDB88320] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = square(odd)  # two zero bits
    odd = square(even)  # four
    while second_length:
        even = square(odd)  # the first pass: one zero byte
        if second_length & 1:
            first = times(even, first)
        second_length >>= 1
        if not second_length:
            break
        odd = square(even)
        if second_length & 1:
            first = times(odd, first)
        second_length >>= 1
    return first ^ second


@functools.cache  # the same bytes every time: made once per test process
def noise_png(side: int = 3000) -> bytes:
    """A ``side`` x ``side`` greyscale PNG of random noise, which OCR takes many seconds over (tesseract finds
    a blob at every few pixels). Each row is 509 random bytes over and over, so the PNG encodes in a fraction
    of what ``Image.effect_noise`` and a full-entropy encode took (~1.2 CPU-s at 3000) and is 1.6 MB, not 9."""
    import random

    from PIL import Image

    rng = random.Random(side)
    rows = b"".join((rng.randbytes(509) * (side // 509 + 1))[:side] for _ in range(side))
    out = io.BytesIO()
    Image.frombytes("L", (side, side), rows).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def many_pages_pdf(pages: int = 100_000) -> bytes:
    """A small PDF that declares ``pages`` pages (one page object referenced over and over)."""
    kids = " ".join("3 0 R" for _ in range(pages))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>",
    ]
    body = b"%PDF-1.4\n"
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(body))
        body += f"{number} 0 obj\n{obj}\nendobj\n".encode()
    xref = len(body)
    body += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        body += f"{offset:010d} 00000 n \n".encode()
    body += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return body


def bomb_png(side: int = 30_000) -> bytes:
    """A PNG that declares ``side`` x ``side`` pixels (900 M) in a few hundred KiB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    row = b"\0" + b"\0" * side
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(200)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def truncated_pdf() -> bytes:
    return pdf()[:200]


def mislabelled_exe() -> bytes:
    """An ELF binary named report.pdf."""
    return b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 512
