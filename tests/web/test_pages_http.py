"""The pages and their assets as HTTP serves them (no browser): types, headers, and nothing outside static/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.gateway import GatewayProcess
from harness.wire import tls

STATIC = Path(__file__).resolve().parents[2] / "src" / "captivate_chat_api" / "server" / "static"


@pytest.fixture(scope="module")
def http(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(verify=tls(), base_url=gateway.http_url, timeout=10) as client:
        yield client


def test_the_chat_page_can_be_framed_and_runs_only_its_own_scripts(http: httpx.Client) -> None:
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors" not in csp  # the widget frames it
    assert page.headers["referrer-policy"] == "no-referrer"  # ?key= never leaks to a linked site
    assert 'src="/static/js/chat.js"' in page.text


def test_the_console_cannot_be_framed(http: httpx.Client) -> None:
    page = http.get("/console")
    assert page.status_code == 200 and "Agent console" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_the_widget_is_a_script_any_site_can_load(http: httpx.Client) -> None:
    widget = http.get("/widget.js")
    assert widget.status_code == 200 and widget.headers["content-type"].startswith("text/javascript")
    assert widget.headers["cross-origin-resource-policy"] == "cross-origin"


def test_every_asset_the_pages_name_is_served_with_its_type(http: httpx.Client) -> None:
    names = set()
    for page in ("chat.html", "console.html"):
        names |= set(re.findall(r'"/static/([^"]+)"', (STATIC / page).read_text()))
    for module in (STATIC / "js").glob("*.js"):
        names |= {f"js/{m}" for m in re.findall(r'from "\./([^"]+)"', module.read_text())}
    assert {"js/chat.js", "js/console.js", "js/sanitize.js", "css/base.css"} <= names
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for name in sorted(names):
        response = http.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(types[Path(name).suffix]), name


@pytest.mark.parametrize(
    "path",
    [
        "/static/../routes/pages.py",
        "/static/%2e%2e/routes/pages.py",
        "/static/%2e%2e/%2e%2e/server/app.py",
        "/static/chat",
        "/static/js/",
        "/static/nothing.js",
        "/static/..%2f..%2fsettings.py",
    ],
)
def test_nothing_outside_static_is_served(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 404, path
    assert "import" not in response.text
