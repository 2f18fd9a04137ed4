"""``captivate-chat serve --workers N``: N processes on one port, one banner, events cross workers."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
import websockets

from harness.cluster import QUIET, RedisServer
from harness.forkserver import run_cli
from harness.gateway import GatewayProcess, new_key
from harness.wire import WireClient

HEADER = "x-captivate-worker"


def workers_of(gateway: GatewayProcess) -> list[int]:
    assert gateway.proc is not None
    children = Path(f"/proc/{gateway.proc.pid}/task/{gateway.proc.pid}/children").read_text().split()
    return [int(pid) for pid in children]


async def test_two_workers_share_the_port_and_hand_events_to_each_other(
    postgres_schema: str, redis_server: RedisServer
) -> None:
    key = new_key()
    env = {**QUIET, "CAPTIVATE_WORKERS": "2", "CAPTIVATE_BROKER": redis_server.url}
    gateway = GatewayProcess(postgres_schema, [key], env=env).start()
    try:
        banner = "".join(gateway.stdout)
        assert banner.count("listening on http://") == 1 and "2 worker processes share the port" in banner
        assert len(workers_of(gateway)) == 2

        clients = [WireClient(gateway.http_url, gateway.ws_url, key) for _ in range(24)]
        await asyncio.gather(*(client.connect() for client in clients))
        crossed = 0
        for n, client in enumerate(clients):
            cid = await client.start(f"user-{n}")
            response = await client.post(
                "user_message", {"conversation_id": cid, "content": {"type": "text", "text": f"hi {n}"}}
            )
            assert response.status_code == 200
            reply = await client.expect("bot_message")
            assert reply["content"]["text"] == f"hi {n}".join(("You said: ", "")) and reply["seq"] == 2
            crossed += response.headers[HEADER] != client.ws.response.headers[HEADER]
        socket_workers = [client.ws.response.headers[HEADER] for client in clients]
        assert set(socket_workers) == {"0", "1"}, "the kernel spread the connections over both workers"
        assert crossed > 0, "some posts were served by the worker that does not hold the socket"

        code = gateway.stop(signal.SIGTERM)
        closes = []
        for client in clients:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(client.ws.recv(), 10)
            closes.append(closed.value.rcvd.code if closed.value.rcvd else None)
            await client.http.aclose()
        assert code == 0
        assert set(closes) == {1001}, "every socket was told to reconnect (going away)"
    finally:
        if gateway.proc is not None and gateway.proc.poll() is None:
            gateway.stop()


def test_a_failed_worker_stops_the_group_with_an_error(tmp_path: Path, redis_server: RedisServer) -> None:
    env = {**QUIET, "CAPTIVATE_WORKERS": "2", "CAPTIVATE_BROKER": redis_server.url}
    gateway = GatewayProcess(tmp_path / "small.db", [new_key()], env=env).start()  # SQLite: a small setup
    try:
        first, second = workers_of(gateway)
        os.kill(first, signal.SIGKILL)
        assert gateway.proc is not None
        code = gateway.proc.wait(30)
    finally:
        gateway.stop()
    assert code != 0
    assert "worker 0 exited" in gateway.logs()
    assert (
        not Path(f"/proc/{second}").exists() or "zombie" in Path(f"/proc/{second}/status").read_text().lower()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "needs --broker"),
        (["--workers", "0"], "--workers must be 1 or more"),
    ],
)
def test_workers_refused_without_what_they_need(tmp_path: Path, args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPTIVATE_")}
    serve = ["serve", "--port", "0", "--database", f"sqlite:///{tmp_path / 'x.db'}", *args]
    result = run_cli(serve, {**env, "COLUMNS": "200"}, kind="gateway")  # forked in the suite
    assert result.returncode == 2
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "x.db").exists(), "nothing was created"
