"""The wire recorder used by the conformance test: it parses what clients send and forwards it unchanged."""

from __future__ import annotations

import asyncio
import zlib

from wire_recorder import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_TEXT,
    ClientStream,
    HttpRequest,
    ParseFailure,
    Record,
    WireRecorder,
    WsMessage,
)

MASK = b"\x11\x22\x33\x44"
UPGRADE = (
    b"GET /dev?apiKey=k HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client frame."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def parse(*chunks: bytes) -> list[Record]:
    records: list[Record] = []
    stream = ClientStream(1, lambda make: records.append(make("s")))
    for chunk in chunks:
        stream.feed(chunk)
    return records


def test_http_requests_split_across_reads_and_pipelined() -> None:
    first = b'POST /api/x?a=1&b=two HTTP/1.1\r\nX-Api-Key: k\r\nContent-Length: 7\r\n\r\n{"a":1}'
    second = b"GET /api/transcript?conversation_id=c HTTP/1.1\r\nAccept: application/json\r\n\r\n"
    wire = first + second
    records = parse(*(wire[i : i + 5] for i in range(0, len(wire), 5)))
    assert [type(r) for r in records] == [HttpRequest, HttpRequest]
    post, get = records
    assert isinstance(post, HttpRequest) and isinstance(get, HttpRequest)
    assert (post.method, post.path, post.query, post.body) == (
        "POST",
        "/api/x",
        {"a": ["1"], "b": ["two"]},
        b'{"a":1}',
    )
    assert post.header("x-api-key") == "k" and post.step == "s"
    assert (get.method, get.path, get.body, get.header("content-type")) == (
        "GET",
        "/api/transcript",
        b"",
        None,
    )
    assert not post.is_websocket_upgrade


def test_chunked_body() -> None:
    wire = b'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n4;x=y\r\n":1}\r\n0\r\n\r\n'
    (request,) = parse(wire[:20], wire[20:])
    assert isinstance(request, HttpRequest) and request.body == b'{"a":1}'


def test_websocket_frames_unmasked_reassembled_and_inflated() -> None:
    deflate = zlib.compressobj(wbits=-15)

    def compressed(data: bytes) -> bytes:  # permessage-deflate with context takeover
        return (deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]

    big = b"x" * 70_000
    records = parse(
        UPGRADE,
        frame(OP_TEXT, b'{"a":', fin=False) + frame(OP_CONTINUATION, b"1}"),
        frame(OP_TEXT, compressed(b'{"event":1}'), rsv1=True),
        frame(OP_TEXT, compressed(b'{"event":1}'), rsv1=True),  # refers back to the first message
        frame(OP_BINARY, b"b" * 300),
        frame(OP_BINARY, big),
        frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye"),
    )
    upgrade, *messages = records
    assert isinstance(upgrade, HttpRequest) and upgrade.is_websocket_upgrade
    assert [(m.opcode, m.data) for m in messages if isinstance(m, WsMessage)] == [
        (OP_TEXT, b'{"a":1}'),
        (OP_TEXT, b'{"event":1}'),
        (OP_TEXT, b'{"event":1}'),
        (OP_BINARY, b"b" * 300),
        (OP_BINARY, big),
        (OP_CLOSE, b"\x03\xe8bye"),
    ]
    assert all(isinstance(m, WsMessage) and m.masked for m in messages)


def test_unparsable_bytes_are_recorded_not_raised() -> None:
    records = parse(b"POST / HTTP/1.1\r\nContent-Length: many\r\n\r\n", b"more")
    assert len(records) == 1 and isinstance(records[0], ParseFailure)
    assert "ValueError" in records[0].error


def test_repr_never_shows_a_key() -> None:
    (request,) = parse(b"GET /dev?apiKey=cck_secret HTTP/1.1\r\nX-Api-Key: cck_secret\r\n\r\n")
    assert "cck_secret" not in repr(request)


async def test_tee_forwards_bytes_unchanged_and_labels_by_step() -> None:
    received = bytearray()
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await reader.readuntil(b"{}"))
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    recorder = WireRecorder(server.sockets[0].getsockname()[1]).start()
    try:
        control_reader, control_writer = await asyncio.open_connection("127.0.0.1", recorder.control_port)
        control_writer.write(b"GET /mark/the%20step HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await control_reader.read()).startswith(b"HTTP/1.1 204")
        control_writer.close()

        request = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
        reader, writer = await asyncio.open_connection("127.0.0.1", recorder.port)
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await writer.wait_closed()
    finally:
        recorder.stop()
        server.close()
        await server.wait_closed()
    assert bytes(received) == request
    assert answer == reply
    (record,) = recorder.records
    assert isinstance(record, HttpRequest) and (record.step, record.path, record.body) == (
        "the step",
        "/p",
        b"{}",
    )
    assert recorder.errors == []
