"""File service benchmark (not a test): extraction throughput, upload -> text latency, the gateway's RSS
during a 25 MiB upload, and a chat round trip's p50 on another conversation while files are extracted.

Run from the repository root (needs the ``files`` and ``test`` extras, and tesseract-ocr)::

    .venv/bin/python bench/files.py
    .venv/bin/python bench/files.py --pdf-pages 100 --repeat 5

1. **extraction** — the worker pool alone (2 worker processes, as the gateway's default): a PDF of
   ``--pdf-pages`` pages extracted ``--repeat`` times (pages/s), and a small DOCX extracted 40 times over
   two workers (files/s).
2. **upload -> text** — ``POST /api/file-to-text`` of a ~1 MiB PDF to a gateway subprocess (loopback), p50
   over ``--repeat`` uploads.
3. **RSS** — the gateway's resident memory (``/proc/PID/status`` VmRSS) sampled every 10 ms while a 25 MiB
   file streams in; printed as the growth over its RSS before the upload (flat = streamed).
4. **chat while extracting** — a chat round trip (``user_message`` -> ``bot_message``) on another key's
   conversation: p50 idle, then p50 while two other processes upload a 50-page PDF back to back (both
   extraction workers busy all the time); the ratio must stay <= 1.5.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "files")]

import samples

from captivate_chat_api.server.files.pool import ExtractionPool
from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient


def pdf_of_pages(pages: int, lines: int = 40, compress: bool = True) -> bytes:
    import io

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4, pageCompression=int(compress))
    for number in range(pages):
        page.setFont("Helvetica", 9)
        for line in range(lines):
            page.drawString(
                40, 800 - line * 18, f"page {number} line {line}: {samples.WORD} lorem ipsum dolor " * 2
            )
        page.showPage()
    page.save()
    return out.getvalue()


def pdf_of_size(target: int) -> bytes:
    """A PDF of about ``target`` bytes (uncompressed page streams: real text on every page)."""
    probe = pdf_of_pages(10, compress=False)
    return pdf_of_pages(max(1, round(10 * target / len(probe))), compress=False)


async def extraction(folder: Path, pages: int, repeat: int) -> None:
    pdf = folder / "bench.pdf"
    pdf.write_bytes(pdf_of_pages(pages))
    docx = folder / "small.docx"
    docx.write_bytes(samples.docx())
    pool = ExtractionPool(2, timeout=120)
    try:
        await pool.extract(docx, "warm.docx")  # start the workers and import the libraries
        await pool.extract(docx, "warm.docx")
        started = time.perf_counter()
        for _ in range(repeat):
            await pool.extract(pdf, "bench.pdf")
        pdf_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(*(pool.extract(docx, "small.docx") for _ in range(40)))
        docx_seconds = time.perf_counter() - started
    finally:
        await pool.close()
    print(
        f"extraction  PDF {pages} pages x{repeat}: {pages * repeat / pdf_seconds:.0f} pages/s (one file at a time)"
    )
    print(f"extraction  small DOCX x40 over 2 workers: {40 / docx_seconds:.1f} files/s")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def upload(http: httpx.AsyncClient, path: str, name: str, data: bytes | Path) -> httpx.Response:
    content = data.open("rb") if isinstance(data, Path) else data
    try:
        return await http.post(
            "/api/file-to-text",
            files={"file": (name, content, "application/octet-stream")},
            data={"storage": "true", "path": path},
        )
    finally:
        if isinstance(data, Path):
            content.close()  # type: ignore[union-attr]


async def gateway_phase(folder: Path, repeat: int) -> None:
    keys = [new_key(), new_key()]
    env = {
        "CAPTIVATE_ACCESS_LOG": "false",
        "CAPTIVATE_LOG_LEVEL": "warning",
        "CAPTIVATE_RATE_PER_SOCKET": "0",
        "CAPTIVATE_RATE_PER_KEY": "0",
        "CAPTIVATE_FILES_UPLOADS_PER_MINUTE_PER_KEY": "0",
        "CAPTIVATE_FILES_MAX_BYTES": str(26 * 1024 * 1024),
    }
    gateway = GatewayProcess(folder / "gw.db", keys, env=env).start()
    assert gateway.proc is not None
    try:
        big_pdf = pdf_of_size(1024 * 1024)
        async with (
            WireClient(gateway.http_url, gateway.ws_url, keys[0]) as files_client,
            WireClient(gateway.http_url, gateway.ws_url, keys[1]) as chat,
            httpx.AsyncClient(base_url=gateway.http_url, timeout=300) as http,
        ):
            conversation = await files_client.start("bench-files")
            path = f"{keys[0]}/{conversation}"
            await upload(http, path, "warm.pdf", big_pdf)
            latencies = []
            for _ in range(repeat):
                started = time.perf_counter()
                response = await upload(http, path, "big.pdf", big_pdf)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
            print(
                f"upload->text  {len(big_pdf) / 1048576:.2f} MiB PDF: p50 {statistics.median(latencies) * 1000:.0f} ms"
                f" (server processingTime {response.json()['processingTime']} ms)"
            )

            huge = folder / "huge.txt"
            with huge.open("wb") as f:
                for _ in range(25):
                    f.write((samples.WORD.encode() + b" ") * (1024 * 1024 // 12))
            before = rss_kib(gateway.proc.pid)
            peak = before
            task = asyncio.create_task(upload(http, path, "huge.txt", huge))
            while not task.done():
                peak = max(peak, rss_kib(gateway.proc.pid))
                await asyncio.sleep(0.01)
            status = (await task).status_code
            print(
                f"RSS  25 MiB upload ({huge.stat().st_size / 1048576:.1f} MiB, status {status}): gateway"
                f" {before / 1024:.0f} MiB before, peak +{(peak - before) / 1024:.1f} MiB"
            )

            other = await chat.start("bench-chat")

            async def round_trip() -> float:
                started = time.perf_counter()
                await chat.say(other, "ping")
                await chat.expect("bot_message")
                return time.perf_counter() - started

            for _ in range(10):
                await round_trip()
            idle = [await round_trip() for _ in range(60)]
            load_pdf = folder / "load.pdf"
            load_pdf.write_bytes(pdf_of_pages(50))
            loaders = [
                subprocess.Popen([sys.executable, __file__, "--load", gateway.http_url, path, str(load_pdf)])  # noqa: ASYNC220
                for _ in range(2)
            ]
            await asyncio.sleep(1.0)
            busy = [await round_trip() for _ in range(60)]
            for loader in loaders:
                loader.terminate()
                loader.wait(10)
        idle_p50, busy_p50 = statistics.median(idle), statistics.median(busy)
        verdict = "met" if busy_p50 <= 1.5 * idle_p50 else "NOT met"
        print(
            f"chat round trip  idle p50 {idle_p50 * 1000:.1f} ms; while 2 other processes upload a 50-page PDF"
            f" back to back (the extraction workers busy) p50 {busy_p50 * 1000:.1f} ms = {busy_p50 / idle_p50:.2f}x idle"
            f" (goal <= 1.5x: {verdict})"
        )
    finally:
        gateway.stop()


def load(base_url: str, path: str, pdf: str) -> None:
    """Upload ``pdf`` back to back until killed (a separate process: the load's client CPU is not ours)."""
    data = Path(pdf).read_bytes()
    with httpx.Client(base_url=base_url, timeout=300) as http:
        while True:
            http.post(
                "/api/file-to-text",
                files={"file": ("load.pdf", data)},
                data={"storage": "false", "path": path},
            )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--load":
        load(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pdf-pages", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(extraction(Path(tmp), args.pdf_pages, args.repeat))
        asyncio.run(gateway_phase(Path(tmp), args.repeat))


if __name__ == "__main__":
    main()
