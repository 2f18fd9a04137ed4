"""CORS over real HTTP: a page on another site calls the gateway's browser routes (the npm client's file
manager, event POST, transcript); preflights are answered, the actual answers (errors included) carry the
headers, a configured allow-list refuses other origins, credentials are never allowed, and the routes a
browser page has no business calling stay same-origin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.gateway import GatewayProcess, new_key
from harness.wire import MESSAGE_PATH, WireClient, envelope, tls

SHOP = "https://shop.example"
EVIL = "https://evil.example"
ENV = {"CAPTIVATE_FILES_UPLOADS_PER_MINUTE_PER_KEY": "600", "CAPTIVATE_FILES_EXTRACT_TIMEOUT": "20"}


@pytest.fixture(scope="module")
def key() -> str:
    return new_key()


@pytest.fixture(scope="module")
def any_origin(tmp_path_factory: pytest.TempPathFactory, key: str) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("cors-any") / "gw.db", [key], env=ENV).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shop_only(tmp_path_factory: pytest.TempPathFactory, key: str) -> Iterator[GatewayProcess]:
    env = {**ENV, "CAPTIVATE_CORS_ORIGINS": f"{SHOP},https://other.example"}
    process = GatewayProcess(tmp_path_factory.mktemp("cors-shop") / "gw.db", [key], env=env).start()
    yield process
    process.stop()


def preflight(gateway: GatewayProcess, path: str, origin: str, method: str, headers: str) -> httpx.Response:
    return httpx.options(
        f"{gateway.http_url}{path}",
        verify=tls(),
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


@pytest.mark.parametrize(
    ("path", "method", "headers"),
    [
        ("/api/file-to-text", "POST", "content-type"),
        ("/api/presigned-url", "POST", "content-type"),
        (MESSAGE_PATH, "POST", "x-api-key,content-type,accept"),
        ("/api/transcript", "GET", "x-api-key,accept"),
        ("/api/custom-channel/messages/c1/m1", "GET", "x-api-key,accept"),
    ],
)
def test_preflights_of_the_browser_routes_are_answered(
    any_origin: GatewayProcess, path: str, method: str, headers: str
) -> None:
    response = preflight(any_origin, path, SHOP, method, headers)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    assert method in response.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert set(headers.split(",")) <= allowed
    assert "access-control-allow-credentials" not in response.headers
    assert int(response.headers["access-control-max-age"]) > 0


def test_a_header_the_clients_never_send_is_not_allowed(any_origin: GatewayProcess) -> None:
    response = preflight(any_origin, "/api/file-to-text", SHOP, "POST", "authorization")
    assert response.status_code == 400


async def test_actual_answers_carry_the_headers_errors_included(any_origin: GatewayProcess, key: str) -> None:
    async with WireClient(any_origin.http_url, any_origin.ws_url, key) as client:
        conversation_id = await client.start("cors-user")
    origin = {"Origin": SHOP}
    async with httpx.AsyncClient(
        verify=tls(), base_url=any_origin.http_url, timeout=60, headers=origin
    ) as http:
        uploaded = await http.post(
            "/api/file-to-text",
            files={"file": ("notes.txt", b"cross origin Zanzibarite\n", "application/octet-stream")},
            data={"storage": "true", "path": f"{key}/{conversation_id}"},
        )
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.headers["access-control-allow-origin"] == "*"
        assert "Zanzibarite" in uploaded.json()["text"]
        presigned = await http.post("/api/presigned-url", json={"fileKey": uploaded.json()["fileKey"]})
        assert presigned.status_code == 200 and presigned.headers["access-control-allow-origin"] == "*"
        refused = await http.post(
            "/api/file-to-text", files={"file": ("n.txt", b"x", "application/octet-stream")}
        )
        assert refused.status_code == 401 and refused.json()["success"] is False
        assert refused.headers["access-control-allow-origin"] == "*"  # the page can show the error
        unknown = await http.post("/api/presigned-url", json={"fileKey": "nope/nope"})
        assert unknown.status_code == 404 and unknown.headers["access-control-allow-origin"] == "*"
        event = envelope(
            "user_message",
            {
                "conversation_id": conversation_id,
                "type": "message_create",
                "content": {"type": "text", "text": "hi"},
            },
        )
        posted = await http.post(MESSAGE_PATH, json=event, headers={"x-api-key": key})
        assert posted.status_code == 200 and posted.headers["access-control-allow-origin"] == "*"
        transcript = await http.get(
            "/api/transcript", params={"conversation_id": conversation_id}, headers={"x-api-key": key}
        )
        assert transcript.status_code == 200 and transcript.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in transcript.headers


def test_other_routes_stay_same_origin(any_origin: GatewayProcess) -> None:
    for path in ("/api/agent/conversations", "/healthz", "/metrics"):
        response = preflight(any_origin, path, SHOP, "GET", "authorization")
        assert "access-control-allow-origin" not in response.headers, path
        got = httpx.get(f"{any_origin.http_url}{path}", headers={"Origin": SHOP}, verify=tls())
        assert "access-control-allow-origin" not in got.headers, path


async def test_an_allow_list_answers_its_origins_only(shop_only: GatewayProcess, key: str) -> None:
    allowed = preflight(shop_only, "/api/file-to-text", SHOP, "POST", "content-type")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == SHOP
    assert "origin" in allowed.headers["vary"].lower()
    refused = preflight(shop_only, "/api/file-to-text", EVIL, "POST", "content-type")
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    async with httpx.AsyncClient(verify=tls(), base_url=shop_only.http_url, timeout=30) as http:
        for origin, expected in ((SHOP, SHOP), (EVIL, None)):
            response = await http.post(
                "/api/presigned-url", json={"fileKey": "x/y"}, headers={"Origin": origin}
            )
            assert response.status_code == 404
            assert response.headers.get("access-control-allow-origin") == expected


def test_the_websocket_allow_list_is_the_default(tmp_path: Path, key: str) -> None:
    env = {**ENV, "CAPTIVATE_ALLOWED_ORIGINS": SHOP}
    gateway = GatewayProcess(tmp_path / "gw.db", [key], env=env).start()
    try:
        assert preflight(gateway, "/api/transcript", SHOP, "GET", "x-api-key").status_code == 200
        assert preflight(gateway, "/api/transcript", EVIL, "GET", "x-api-key").status_code == 400
    finally:
        gateway.stop()
