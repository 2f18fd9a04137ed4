"""Message content as plain lines: text, buttons (a numbered list), cards, HTML tables (aligned rows),
HTML (stripped to text), files (name and URL), and anything else as compact JSON."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

from ..protocol.files import normalize_files


class _HtmlText(HTMLParser):
    """HTML to plain lines: blocks become lines, tables become aligned ``a | b`` rows, links keep their URL."""

    BLOCKS = frozenset(
        {
            "p",
            "div",
            "ul",
            "ol",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "section",
            "article",
            "header",
            "footer",
            "blockquote",
            "pre",
            "hr",
            "table",
            "thead",
            "tbody",
            "tfoot",
            "caption",
            "dl",
            "dt",
            "dd",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._text: list[str] = []
        self._rows: list[tuple[bool, list[str]]] = []
        self._row: list[str] | None = None
        self._header_row = False
        self._cell: list[str] | None = None
        self._links: list[tuple[str | None, int]] = []
        self._skip = 0

    def _sink(self) -> list[str]:
        return self._cell if self._cell is not None else self._text

    def _flush(self) -> None:
        line = " ".join("".join(self._text).split())
        if line:
            self.lines.append(line)
        self._text = []

    def _end_cell(self) -> None:
        if self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
        self._cell = None

    def _end_row(self) -> None:
        self._end_cell()
        if self._row:
            self._rows.append((self._header_row, self._row))
        self._row, self._header_row = None, False

    def _end_table(self) -> None:
        self._end_row()
        self.lines.extend(table_lines(self._rows))
        self._rows = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "tr":
            self._end_row()
            self._flush()
            self._row = []
        elif tag in ("td", "th"):
            self._end_cell()
            if self._row is None:
                self._row = []
            self._header_row = self._header_row or tag == "th"
            self._cell = []
        elif tag == "br":
            if self._cell is not None:
                self._cell.append(" ")
            else:
                self._flush()
        elif tag == "li":
            self._flush()
            self._text.append("- ")
        elif tag == "a":
            self._links.append((attributes.get("href"), len(self._sink())))
        elif tag == "img":
            label = attributes.get("alt") or "image"
            self._sink().append(f" [{label}: {attributes.get('src') or ''}] ")
        elif tag in self.BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("td", "th"):
            self._end_cell()
        elif tag == "tr":
            self._end_row()
        elif tag == "table":
            self._end_table()
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            sink = self._sink()
            text = "".join(sink[start:]).strip()
            if href and href != text:
                sink.append(f" <{href}>")
        elif tag in self.BLOCKS or tag == "li":
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._sink().append(data)

    def close(self) -> None:
        super().close()
        if self._rows or self._row:
            self._end_table()
        self._flush()


def html_lines(html: str) -> list[str]:
    """Plain-text lines of an HTML fragment (tags stripped, entities decoded, tables as rows)."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return parser.lines


def table_lines(rows: list[tuple[bool, list[str]]]) -> list[str]:
    """Rows of cells as aligned ``a | b`` lines; a header row (``th`` cells) is underlined."""
    if not rows:
        return []
    columns = max(len(cells) for _, cells in rows)
    widths = [max((len(cells[i]) for _, cells in rows if i < len(cells)), default=0) for i in range(columns)]
    lines: list[str] = []
    for header, cells in rows:
        padded = [(cells[i] if i < len(cells) else "").ljust(widths[i]) for i in range(columns)]
        lines.append(" | ".join(padded).rstrip())
        if header and len(lines) == 1:
            lines.append("-+-".join("-" * w for w in widths))
    return lines


def compact(value: Any) -> str:
    """One-line JSON (non-ASCII kept as is)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _option_label(option: Any) -> str:
    if isinstance(option, dict):
        for key in ("text", "title", "label", "value", "payload"):
            if isinstance(option.get(key), str | int | float):
                return str(option[key])
        return compact(option)
    return str(option)


def _buttons(message: dict[str, Any]) -> list[str]:
    block = message.get("buttons")
    lines: list[str] = []
    if isinstance(block, dict):
        title = block.get("title") or block.get("text")
        if title:
            lines.append(str(title))
        options = block.get("options") or block.get("buttons") or []
    else:
        options = block if isinstance(block, list) else []
    options = options if isinstance(options, list) else [options]
    lines += [f"  {number}. {_option_label(option)}" for number, option in enumerate(options, 1)]
    return lines or [compact(message)]


def _cards(message: dict[str, Any]) -> list[str]:
    cards = message.get("cards")
    if not isinstance(cards, list):
        return [compact(message)]
    lines: list[str] = []
    for card in cards:
        if not isinstance(card, dict):
            lines.append(f"- {card}")
            continue
        title = card.get("text") or card.get("title") or "(untitled)"
        description = card.get("description")
        lines.append(f"- {title}" + (f": {description}" if description else ""))
        if card.get("link"):
            lines.append(f"  {card['link']}")
    return lines


def _table(message: dict[str, Any]) -> list[str]:
    table = message.get("table")
    if isinstance(table, str):
        return html_lines(table)
    if isinstance(table, list) and all(isinstance(row, list) for row in table):
        return table_lines([(False, [str(cell) for cell in row]) for row in table])
    return [compact(message)]


def file_lines(files: Any) -> list[str]:
    """``file: NAME URL`` lines (a stored file's URL is its presigned URL)."""
    lines: list[str] = []
    for file in normalize_files(files):  # any of the npm client's three forms
        storage = file["storage"] if isinstance(file.get("storage"), dict) else {}
        url = file.get("url") or storage.get("presignedUrl") or ""
        name = file.get("filename") or file.get("name") or "file"
        kind = f" ({file['type']})" if file.get("type") else ""
        lines.append(f"file: {name}{kind} {url}".rstrip())
    return lines


def render_content(content: Any) -> list[str]:
    """Plain-text lines for message content: one message object, a list of them, or a bare string."""
    if content is None:
        return []
    if isinstance(content, str):
        return content.splitlines() or [""]
    if isinstance(content, list):
        return [line for item in content for line in render_content(item)]
    if not isinstance(content, dict):
        return [compact(content)]
    kind = content.get("type")
    if kind == "button":
        lines = _buttons(content)
    elif kind == "cards":
        lines = _cards(content)
    elif kind == "table":
        lines = _table(content)
    elif kind == "html" and isinstance(content.get("html"), str):
        lines = html_lines(content["html"])
    elif kind == "files":
        return file_lines(content.get("files")) or [compact(content)]
    elif isinstance(content.get("text"), str) and kind in (None, "text"):
        lines = content["text"].splitlines() or (
            [] if content.get("files") else [""]
        )  # files only: no blank line
    else:
        lines = [f"[{kind or 'message'}] {compact(content)}"]
    return lines + file_lines(content.get("files"))
