"""The S3 storage backend, for real, against an S3-compatible server on loopback (moto in server mode): a
gateway stores uploads as objects, hands out the bucket's presigned URLs, and a hard delete removes them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import samples

from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient, tls

BUCKET = "captivate-files"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on a free loopback port, serving from a thread of this process (a real
    HTTP server: the gateway reaches it over a socket), which has botocore imported already for the test's
    own client, instead of a process of its own that imports it all again (~0.4 CPU-s)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    httpx.get(endpoint, timeout=10, verify=tls())  # it answers
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> Any:
    import boto3  # here, not at collection: every xdist worker collects this module (~0.3 CPU-s of imports)

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        **{k.lower(): v for k, v in CREDENTIALS.items() if k != "AWS_DEFAULT_REGION"},
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return [new_key()]


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, keys: list[str], s3_endpoint: str, bucket: Any
) -> Iterator[GatewayProcess]:
    env = {**CREDENTIALS, "CAPTIVATE_FILES_STORAGE": f"s3://{BUCKET}/uploads?endpoint={s3_endpoint}"}
    process = GatewayProcess(tmp_path_factory.mktemp("s3") / "gw.db", keys, env=env).start()
    yield process
    process.stop()


def objects(bucket: Any) -> list[str]:
    return [o["Key"] for o in bucket.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


async def test_uploads_become_objects_with_presigned_urls(
    gateway: GatewayProcess, keys: list[str], bucket: Any
) -> None:
    pdf = samples.pdf()  # made once: each one carries its own creation time
    async with WireClient(gateway.http_url, gateway.ws_url, keys[0]) as client:
        conversation_id = await client.start("s3-user")
        async with httpx.AsyncClient(base_url=gateway.http_url, timeout=60, verify=tls()) as http:
            uploaded = await http.post(
                "/api/file-to-text",
                files={"file": ("report.pdf", pdf, "application/octet-stream")},
                data={"storage": "true", "path": f"{keys[0]}/{conversation_id}"},
            )
            assert uploaded.status_code == 200, uploaded.text
            body = uploaded.json()
            assert samples.WORD in body["text"]
            assert f"uploads/{body['fileKey']}" in objects(bucket)
            assert all(not key.endswith(".part") for key in objects(bucket))
            got = await http.get(body["presignedUrl"])
            assert got.status_code == 200 and got.content == pdf
            assert got.headers["content-disposition"].startswith("attachment;")
            assert got.headers["content-type"] == "application/pdf"
            fresh = await http.post("/api/presigned-url", json={"fileKey": body["fileKey"], "expiresIn": 60})
            assert (
                fresh.status_code == 200 and (await http.get(fresh.json()["presignedUrl"])).status_code == 200
            )
        await client.ok("delete_conversation", {"conversation_id": conversation_id, "softdelete": False})
    assert f"uploads/{body['fileKey']}" not in objects(bucket)
