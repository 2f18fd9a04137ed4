"""The one-tag widget on a foreign site, rich agent content (and hostile HTML), the 413 message link,
streamed replies, and a refused key, in real Chromium against a real gateway process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from browser_kit import open_tab
from playwright.async_api import Browser, Frame, Page, Route, expect

from harness.gateway import GatewayProcess, new_key
from harness.tokens import add_token, set_agent
from harness.wire import tls

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server" / "agents"))
from fake_openai import FakeOpenAI  # a stand-in for an OpenAI-compatible API, on loopback

# one Chromium per test process (tests/web/conftest.py), so the web tests share the session's event loop
pytestmark = pytest.mark.asyncio(loop_scope="session")

OPENAI_KEY = "sk-fake-web"
HOSTILE_HTML = (
    "<p>Your <b>order</b> <a href='https://example.com/track' onclick='window.__pwned=1'>ships today</a>.</p>"
    "<img src=x onerror='window.__pwned=2'><script>window.__pwned=3</script>"
    "<a href='javascript:window.__pwned=4'>bad link</a><iframe src='https://example.com/'></iframe>"
    "<div style='position:fixed;inset:0'>overlay</div>"
)

SANITIZER_VECTORS = [
    "<svg><script>window.__pwned=5</script></svg>",
    "<math><mi xlink:href='javascript:window.__pwned=6'>x</mi></math>",
    "<a href=' javascript:window.__pwned=7'>a</a><a href='JaVaScRiPt:window.__pwned=8'>b</a>",
    "<a href='jav&#x09;ascript:window.__pwned=9'>c</a>",
    "<img src='data:image/svg+xml,<svg onload=window.__pwned=10>'>",
    "<form action='https://evil.example/'><input name=q><button>go</button></form>",
    "<style>body{display:none}</style><p onmouseover='window.__pwned=11' style='color:red'>p</p>",
    "<noscript><p title='</noscript><img src=x onerror=window.__pwned=12>'></noscript>",
    "<table><tr><td background='javascript:window.__pwned=13' colspan='2x'>td</td></tr></table>",
    "<details open ontoggle='window.__pwned=14'>d</details>",
    "<a href='https://ok.example/' target='_self' onclick='window.__pwned=15'>fine</a>",
]


@dataclass
class Site:
    gateway: GatewayProcess
    key: str
    streaming_key: str
    push_token: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A gateway with two channels: the demo agent, and an OpenAI-compatible agent that streams."""
    fake = FakeOpenAI(OPENAI_KEY, chunk_delay=0.25).start()
    database = tmp_path_factory.mktemp("web") / "gateway.db"
    key, streaming_key = new_key(), new_key()
    env = {"CAPTIVATE_AGENT_BASE_URL": fake.base_url, "CAPTIVATE_AGENT_API_KEY": OPENAI_KEY}
    gateway = GatewayProcess(database, [key, streaming_key], env=env).start()
    try:
        asyncio.run(set_agent(database, streaming_key, "openai:fake-model"))
        yield Site(gateway, key, streaming_key, asyncio.run(add_token(database, key, "push")))
    finally:
        gateway.stop()
        fake.stop()


def shop_url(site: Site) -> str:
    """A site on another origin than the gateway's."""
    return f"http://localhost:{site.gateway.port}/shop.html"


def shop_page(site: Site) -> str:
    return (
        "<!doctype html><html><head><title>Shop</title></head>"
        "<body style='font-family:sans-serif;margin:40px;background:#fafafa'>"
        "<h1>Example Shop</h1><p>Spring sale: everything 20% off.</p>"
        f'<script src="{site.gateway.http_url}/widget.js" data-api-key="{site.key}" data-start="user" '
        'data-title="Shop help" async></script></body></html>'
    )


def chat_frame(page: Page) -> Frame:
    frame = next((f for f in page.frames if "embed=1" in f.url), None)
    assert frame is not None, [f.url for f in page.frames]
    return frame


async def test_one_tag_puts_the_chat_on_any_site(browser: Browser, site: Site) -> None:
    tab = await open_tab(browser, site.gateway.http_url, width=1000, height=760)

    async def serve_shop(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body=shop_page(site))

    await tab.page.context.route(shop_url(site), serve_shop)
    # the shop page is served by the test, not from a loopback socket: Chromium's Local Network Access
    # would then ask the visitor before the page reaches the gateway on 127.0.0.1 (a public gateway: no)
    await tab.page.context.grant_permissions(["local-network-access"])
    await tab.page.goto(shop_url(site))
    launcher = tab.page.get_by_role("button", name="Open the chat")
    await expect(launcher).to_be_visible()
    await expect(tab.page.locator("iframe")).to_have_count(0)  # nothing loads until the visitor opens it

    await launcher.click()
    frame_locator = tab.page.frame_locator("iframe[title='Shop help']")
    await expect(frame_locator.locator("#title")).to_have_text("Shop help")
    await expect(frame_locator.locator("#status-text")).to_have_text("Online")
    await expect(frame_locator.locator("#history .row")).to_have_count(0)  # user-first: no greeting
    await frame_locator.locator("#input").fill("Do you ship to Norway?")
    await frame_locator.locator("#input").press("Enter")
    await expect(frame_locator.locator("#history .row--bot .bubble").last).to_have_text(
        "You said: Do you ship to Norway?"
    )
    assert site.key not in chat_frame(tab.page).url  # the key left the frame's address too
    await tab.shot("widget")

    await frame_locator.get_by_role("button", name="Close the chat").click()
    await expect(tab.page.locator("iframe[title='Shop help']")).to_be_hidden()
    await tab.page.get_by_role("button", name="Open the chat").click()
    await expect(frame_locator.locator("#history .row--bot .bubble").last).to_have_text(
        "You said: Do you ship to Norway?"
    )
    assert tab.errors == []


async def test_rich_content_renders_and_agent_html_cannot_run_script(browser: Browser, site: Site) -> None:
    tab = await open_tab(browser, site.gateway.http_url)
    page = tab.page
    await page.goto(f"{site.gateway.http_url}/?key={site.key}")
    await expect(page.locator("#history .row--bot .bubble").first).to_contain_text("Hello!")
    conversation_id = await page.evaluate(
        "JSON.parse(localStorage.getItem('captivate.chat.conversation')).conversation_id"
    )

    async with httpx.AsyncClient(verify=tls(), timeout=10) as http:
        response = await http.post(
            f"{site.gateway.http_url}/api/channel/v2/sendMessage",
            headers={"x-agent-token": site.push_token},
            json={
                "session_id": conversation_id,
                "response": [
                    {"type": "html", "html": HOSTILE_HTML},
                    {
                        "type": "files",
                        "files": [
                            {
                                "type": "application/pdf",
                                "url": "https://example.com/r.pdf",
                                "filename": "report.pdf",
                            }
                        ],
                    },
                    {"type": "weather", "city": "Oslo", "celsius": 4},
                    {
                        "type": "button",
                        "buttons": {
                            "title": "Track it?",
                            "options": [{"label": "Track", "value": "track my order"}],
                        },
                    },
                ],
            },
        )
    assert response.status_code == 200, response.text

    html = page.locator("#history .m-html").last
    await expect(html.locator("b")).to_have_text("order")
    await expect(html.locator("a", has_text="ships today")).to_have_attribute(
        "href", "https://example.com/track"
    )
    await expect(html.locator("a", has_text="ships today")).to_have_attribute(
        "rel", "noopener noreferrer nofollow"
    )
    await expect(html).to_contain_text("overlay")  # the text stays, its styling does not
    for hostile in (
        "script",
        "iframe",
        "img",
        "[onclick]",
        "[onerror]",
        "[style]",
        "a[href^='javascript']",
    ):
        assert await html.locator(hostile).count() == 0, hostile
    await expect(page.locator("#history .m-file a")).to_have_attribute("href", "https://example.com/r.pdf")
    await expect(page.locator("#history .m-file")).to_contain_text("report.pdf")
    await expect(page.locator("#history .m-custom summary")).to_have_text("Custom message: weather")
    await page.get_by_role("button", name="Track").click()  # an option object sends its value
    await expect(page.locator("#history .row--bot .bubble").last).to_have_text("You said: track my order")
    assert await page.evaluate("window.__pwned") is None
    await page.fill("#input", "cards")
    await page.press("#input", "Enter")
    card = page.locator("#history .card").last
    await expect(card.locator(".card__title")).to_have_text("Captivate Chat")
    # the card's image ships with the package: the page makes no external request for it
    await expect(card.locator(".card__link")).to_have_attribute("href", f"{site.gateway.http_url}/")
    image = card.locator("img")
    await expect(image).to_have_attribute("src", f"{site.gateway.http_url}/static/demo-card.svg")
    await page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=await image.element_handle()
    )
    await tab.shot("chat-rich")

    # an agent action is shown as such; a new title shows in the header
    await page.fill("#input", "action")
    await page.press("#input", "Enter")
    await expect(page.locator("#history .row--event summary")).to_have_text(
        "The agent sent an action: demo_action"
    )
    await page.fill("#input", "title Order 1234")
    await page.press("#input", "Enter")
    await expect(page.locator("#title")).to_have_text("Order 1234")

    # the sanitizer itself, on the classic tricks: the rendered nodes are checked, not the markup text
    outputs = await page.evaluate(
        """async (vectors) => {
            const { sanitizeHtml } = await import('/static/js/sanitize.js');
            const banned = new Set(['SCRIPT', 'SVG', 'MATH', 'IFRAME', 'STYLE', 'FORM', 'INPUT', 'BUTTON', 'NOSCRIPT', 'DETAILS']);
            return vectors.map((html) => {
                const box = document.createElement('div');
                box.append(sanitizeHtml(html));
                document.body.append(box);  // live in the page: a handler would fire now
                const problems = [];
                for (const node of box.querySelectorAll('*')) {
                    if (banned.has(node.tagName.toUpperCase())) problems.push(node.tagName);
                    for (const attr of node.attributes) {
                        if (attr.name.startsWith('on') || attr.name === 'style' || attr.name === 'background') problems.push(attr.name);
                        if ((attr.name === 'href' || attr.name === 'src') && !/^https?:/.test(attr.value)) problems.push(attr.value);
                    }
                }
                const out = box.innerHTML;
                box.remove();
                return [out, problems];
            });
        }""",
        SANITIZER_VECTORS,
    )
    for html, (out, problems) in zip(SANITIZER_VECTORS, outputs):
        assert problems == [], (html, out, problems)
    assert (
        outputs[-1][0]
        == '<a href="https://ok.example/" target="_blank" rel="noopener noreferrer nofollow">fine</a>'
    )
    assert await page.evaluate("window.__pwned") is None

    # the 413 fallback: a reply too large for a frame is fetched from its message link, shown folded
    await page.fill("#input", "big")
    await page.press("#input", "Enter")
    more = page.get_by_role("button", name="Show all 307,200 characters")
    await expect(more).to_be_visible()
    await more.click()
    length = await page.locator("#history .row--bot .m-text").last.evaluate("node => node.textContent.length")
    assert length == 300 * 1024

    # a new conversation: a fresh greeting, a fresh id
    await page.get_by_role("button", name="Start a new conversation").click()
    await expect(page.locator("#history .row")).to_have_count(1)
    await expect(page.locator("#history .row--bot .bubble")).to_contain_text("Hello!")
    fresh = await page.evaluate(
        "JSON.parse(localStorage.getItem('captivate.chat.conversation')).conversation_id"
    )
    assert fresh != conversation_id
    assert tab.errors == []


async def test_a_streamed_reply_grows_in_place_then_settles(browser: Browser, site: Site) -> None:
    tab = await open_tab(browser, site.gateway.http_url)
    page = tab.page
    await page.goto(f"{site.gateway.http_url}/?key={site.streaming_key}&start=user")
    await expect(page.locator("#status-text")).to_have_text("Online")
    await page.fill("#input", "one two three four five six seven eight")
    await page.press("#input", "Enter")
    streaming = page.locator("#pending .row--streaming .m-text")
    await expect(streaming).to_contain_text("You said:")  # words arrive while the reply is being written
    final = page.locator("#history .row--bot .bubble")
    await expect(final).to_have_text("You said: one two three four five six seven eight")
    await expect(page.locator("#pending .row")).to_have_count(0)  # the draft gave way to the stored reply
    await expect(final).to_have_count(1)
    assert tab.errors == []


async def test_a_refused_key_asks_for_another(browser: Browser, site: Site) -> None:
    tab = await open_tab(browser, site.gateway.http_url)
    page = tab.page
    await page.goto(f"{site.gateway.http_url}/?key=cck_not_a_real_key")
    await expect(page.locator("#key-error")).to_contain_text("The gateway refused this API key")
    await expect(page.locator("#status-text")).to_have_text("API key refused")
    await tab.shot("chat-key-refused")
    await page.fill("#key-input", site.key)
    await page.get_by_role("button", name="Start chatting").click()
    await expect(page.locator("#history .row--bot .bubble").first).to_contain_text("Hello!")
    assert tab.errors == []
