"""Wire conformance: for the same calls, our Python SDK puts on the wire what the npm client 7.0.0 does.

Both clients run one fixed sequence of calls (``STEPS``), with the same arguments (``INPUTS``), against a real
gateway, each through its own :class:`WireRecorder` (a recording tee: what the client sent reaches the
gateway unchanged, and is parsed on the side). Each recorded request or client WebSocket frame is labelled
with the step that sent it, then reduced to what matters on the wire (:func:`view`): method, path, query,
the headers a platform reads, and the JSON body, with every value handed out at run time (API keys,
socket id, conversation and message ids) replaced by its name. Per step:

- ``test_npm_client_sends``: the npm client's requests are the ones PROTOCOL.md describes (``EXPECTED``),
  so the comparison below is not vacuous and a change of the npm client's wire shows up here;
- ``test_python_sdk_sends_what_npm_sends``: the Python SDK (default HTTP transport) sends the same,
  key for key.

The one intended difference, the format of ``client_msg_id`` (``unique-message-id-<ms>`` and friends in
npm, UUIDs in ours, see PROTOCOL.md §5), is compared by shape in the steps and asserted exactly in
``test_client_msg_id_formats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from npm_runner import HERE, VERSION, run_script
from wire_recorder import OP_CLOSE, OP_TEXT, HttpRequest, ParseFailure, Record, WireRecorder, WsMessage

from captivate_chat_api import CaptivateChatAPI, Conversation
from captivate_chat_api.errors import CaptivateChatError
from harness.gateway import GatewayProcess

pytestmark = pytest.mark.interop

SCRIPT = HERE / "wire_sequence.cjs"
SCRIPT_TIMEOUT = 45.0
MESSAGE_PATH = "/api/custom-channel/sockets/message"

INPUTS: dict[str, Any] = {
    "user_id": "wire-user",
    "user_info": {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com"},
    "metadata": {"topic": "alpha", "plan": "pro", "tags": ["a", "b"], "nested": {"n": 1}},
    "private_metadata": {"secret": "s1"},
    "bot_user_info": {"firstName": "Bob"},
    "bot_metadata": {"topic": "beta"},
    "text": "hello",
    "object_message": {"type": "text", "text": "an object", "extra": {"lang": "en", "n": 2}},
    "metadata_update": {"plan": "pro", "step": 2},
    "private_update": {"crm_id": 7},
    "action_id": "my_action",
    "action_data": {"x": 1, "tags": ["t"]},
    "edited_text": "hello, edited",
    "filter": {"plan": "pro"},
    "search": {"topic": "alph"},
    "pagination": {"page": 1, "limit": 5},
    "ttl_days": 7,
}

STEPS = (
    "connect",
    "create_user_first",
    "create_bot_first",
    "send_message_string",
    "send_message_object",
    "set_metadata",
    "set_private_metadata",
    "get_metadata",
    "send_action",
    "edit_message",
    "get_transcript",
    "list_v1",
    "list_v2",
    "list_v2_filter_only",
    "set_time_to_live",
    "delete_conversation",
    "delete_user_conversations",
    "disconnect",
)

# Headers a platform reads; any other x-* header is compared too (see view()).
HEADERS = ("x-api-key", "content-type", "accept", "authorization", "origin", "sec-websocket-protocol")
CLIENT_MSG_ID = (
    "<client_msg_id>"  # any non-empty string: the formats differ by design (test_client_msg_id_formats)
)
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
MS = r"\d{13}"  # Date.now()
CLIENT_MSG_ID_FORMATS = {
    "npm": {
        "user_message": rf"unique-message-id-{MS}",
        "metadata": rf"metadata-{MS}",
        "edit_message": rf"edit-message-id-{MS}",
    },
    "python": {"user_message": UUID, "metadata": rf"metadata-{UUID}", "edit_message": rf"edit-{UUID}"},
}


# --- what each client was given, and what it sent ------------------------------------------------------------


@dataclass
class Capture:
    """One client's run: its recorded traffic, what it was handed at run time, and its failed calls."""

    client: str
    records: list[Record] = field(repr=False)  # raw: API keys included
    names: dict[str, str] = field(repr=False)
    """Run-time values (keys, socket id, conversation/message ids) -> their names in views."""
    errors: dict[str, str] = field(default_factory=dict)
    recorder_errors: list[str] = field(default_factory=list)

    def step_records(self, name: str) -> list[Record]:
        return [r for r in self.records if r.step == name]


def names_for(
    keys: list[str], socket_id: Any, conversations: dict[str, Any], hello_id: Any
) -> dict[str, str]:
    names = {keys[0]: "<key1>", keys[1]: "<key2>"}
    for value, name in (
        (socket_id, "<socket_id>"),
        (conversations.get("A"), "<conversation A>"),
        (conversations.get("B"), "<conversation B>"),
        (hello_id, "<message hello>"),
    ):
        if isinstance(value, str) and value:
            names[value] = name
    return names


@pytest.fixture(scope="module")
def npm_wire(gateway: GatewayProcess, tenant_keys: list[str]) -> Capture:
    """The npm client's run of STEPS (wire_sequence.cjs), as recorded."""
    recorder = WireRecorder(gateway.port).start()
    env = {
        **os.environ,
        "CCA_PORT": str(recorder.port),
        "CCA_CONTROL_PORT": str(recorder.control_port),
        "CCA_KEY1": tenant_keys[0],
        "CCA_KEY2": tenant_keys[1],
        "CCA_INPUTS": json.dumps(INPUTS),
    }
    try:
        results = run_script(
            SCRIPT, env, timeout=SCRIPT_TIMEOUT, context=lambda: f"gateway log:\n{gateway.logs()}"
        )
    finally:
        recorder.stop()
    assert results["_meta"]["package_version"] == VERSION
    errors = {
        name: result["error"]
        for name, result in results.items()
        if isinstance(result, dict) and set(result) == {"error"}
    }
    conversations = {
        "A": results.get("create_user_first", {}).get("conversationId"),
        "B": results.get("create_bot_first", {}).get("conversationId"),
    }
    socket_id = results.get("connect", {}).get("socketId")
    hello_id = results.get("send_message_string", {}).get("messageId")
    names = names_for(tenant_keys, socket_id, conversations, hello_id)
    return Capture("npm", recorder.records, names, errors, recorder.errors)


@pytest.fixture(scope="module")
def python_wire(gateway: GatewayProcess, tenant_keys: list[str]) -> Capture:
    """Our SDK's run of STEPS (default transport), as recorded."""
    recorder = WireRecorder(gateway.port).start()
    try:
        capture = asyncio.run(run_python_sdk(recorder, tenant_keys))
    finally:
        recorder.stop()
    capture.records = recorder.records
    capture.recorder_errors = recorder.errors
    return capture


async def run_python_sdk(recorder: WireRecorder, keys: list[str]) -> Capture:
    """STEPS with the Python SDK: the same calls and arguments as wire_sequence.cjs."""
    i = INPUTS
    api = CaptivateChatAPI(keys[0], base_url=recorder.http_url)
    found: dict[str, Any] = {}

    def conv() -> Conversation:
        if found.get("A") is None:
            raise RuntimeError("conversation A was not created")
        conversation: Conversation = found["A"]
        return conversation

    async def create_user_first() -> None:
        found["A"] = await api.create_conversation(
            i["user_id"],
            i["user_info"],
            i["metadata"],
            mode="user-first",
            private_metadata=i["private_metadata"],
        )

    async def create_bot_first() -> None:
        found["B"] = await api.create_conversation(
            i["user_id"], i["bot_user_info"], i["bot_metadata"], mode="bot-first"
        )

    async def send_message_string() -> None:
        found["hello"] = (await conv().send_message(i["text"])).message_id

    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "connect": api.connect,
        "create_user_first": create_user_first,
        "create_bot_first": create_bot_first,
        "send_message_string": send_message_string,
        "send_message_object": lambda: conv().send_message(i["object_message"]),
        "set_metadata": lambda: conv().set_metadata(i["metadata_update"]),
        "set_private_metadata": lambda: conv().set_private_metadata(i["private_update"]),
        "get_metadata": lambda: conv().get_metadata(),
        "send_action": lambda: conv().send_action(i["action_id"], i["action_data"]),
        "edit_message": lambda: conv().edit_message(found.get("hello") or "", i["edited_text"]),
        "get_transcript": lambda: conv().get_transcript(),
        "list_v1": lambda: api.get_user_conversations(i["user_id"]),
        "list_v2": lambda: api.get_user_conversations(
            i["user_id"],
            filter=i["filter"],
            search=i["search"],
            pagination=i["pagination"],
            api_keys=list(keys),
        ),
        "list_v2_filter_only": lambda: api.get_user_conversations(i["user_id"], filter=i["filter"]),
        "set_time_to_live": lambda: conv().set_time_to_live(i["ttl_days"]),
        "delete_conversation": lambda: conv().delete(soft_delete=True),
        "delete_user_conversations": lambda: api.delete_user_conversations(i["user_id"]),
        "disconnect": api.close,
    }
    assert tuple(calls) == STEPS
    errors: dict[str, str] = {}
    try:
        for name, call in calls.items():
            recorder.mark(name)
            try:
                await asyncio.wait_for(call(), 15)
            except (CaptivateChatError, RuntimeError, TimeoutError, ValueError, TypeError) as exc:
                # one failed call must not hide the others: each step reports its own
                errors[name] = f"{type(exc).__name__}: {exc}"
    finally:
        await api.close()
    conversations = {name: getattr(found.get(name), "conversation_id", None) for name in ("A", "B")}
    return Capture("python", [], names_for(keys, api.socket_id, conversations, found.get("hello")), errors)


# --- reducing a record to what matters on the wire -----------------------------------------------------------


def view(record: Record, names: dict[str, str]) -> dict[str, Any]:
    """A record with run-time values named, client_msg_id by shape, and only the headers a platform reads."""

    def named(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: named(v) for k, v in value.items()}
        if isinstance(value, list):
            return [named(v) for v in value]
        return names.get(value, value) if isinstance(value, str) else value

    if isinstance(record, ParseFailure):
        return {"kind": "unparsable", "error": record.error}
    if isinstance(record, WsMessage):
        if record.opcode == OP_CLOSE:
            code = int.from_bytes(record.data[:2], "big") if len(record.data) >= 2 else None
            return {"kind": "websocket close", "code": code}
        data: Any = record.data.decode("utf-8", "replace") if record.opcode == OP_TEXT else record.data.hex()
        with contextlib.suppress(ValueError):
            data = _shape_client_msg_id(named(json.loads(data)))
        return {"kind": f"websocket frame (opcode {record.opcode})", "data": data}
    headers = {
        name.lower(): named(value)
        for name, value in record.headers
        if name.lower() in HEADERS or name.lower().startswith("x-")
    }
    body: Any = None
    if record.body:
        body = record.body.decode("utf-8", "replace")
        with contextlib.suppress(ValueError):
            body = _shape_client_msg_id(named(json.loads(body)))
    return {
        "kind": "websocket upgrade" if record.is_websocket_upgrade else "http",
        "method": record.method,
        "path": record.path,
        "query": named(record.query),
        "headers": headers,
        "body": body,
    }


def _shape_client_msg_id(body: Any) -> Any:
    payload = _payload(body)
    value = payload.get("client_msg_id") if payload is not None else None
    if payload is not None and isinstance(value, str) and value:
        payload["client_msg_id"] = CLIENT_MSG_ID
    return body


def _payload(body: Any) -> dict[str, Any] | None:
    event = body.get("event") if isinstance(body, dict) else None
    payload = event.get("event_payload") if isinstance(event, dict) else None
    return payload if isinstance(payload, dict) else None


def step_views(capture: Capture, name: str) -> list[dict[str, Any]]:
    """The step's requests and client frames; WebSocket pings/pongs (keepalive, not protocol) left out."""
    return [
        view(r, capture.names)
        for r in capture.step_records(name)
        if not (isinstance(r, WsMessage) and r.opcode in (0x9, 0xA))
    ]


def differences(expected: Any, actual: Any, path: str = "", reference: str = "npm") -> Iterator[str]:
    """Where ``actual`` differs from ``expected`` (what ``reference`` sends), one line per key."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected.keys() | actual.keys():
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                yield f"{where}: missing ({reference} sends {expected[key]!r})"
            elif key not in expected:
                yield f"{where}: extra ({reference} does not send it; got {actual[key]!r})"
            else:
                yield from differences(expected[key], actual[key], where, reference)
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            yield f"{path or 'step'}: {reference} sends {len(expected)} item(s), got {len(actual)}"
        for index, (e, a) in enumerate(zip(expected, actual)):
            yield from differences(e, a, f"{path}[{index}]", reference)
    elif expected != actual or type(expected) is not type(actual):
        yield f"{path or 'value'}: {reference} sends {expected!r}, got {actual!r}"


# --- what PROTOCOL.md says the npm client sends --------------------------------------------------------------

JSON_HEADERS = {"x-api-key": "<key1>", "content-type": "application/json", "accept": "application/json"}
A, B = "<conversation A>", "<conversation B>"


def post(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    envelope = {"event_type": event_type, "event_payload": payload, "socket_id": "<socket_id>"}
    return {
        "kind": "http",
        "method": "POST",
        "path": MESSAGE_PATH,
        "query": {},
        "headers": JSON_HEADERS,
        "body": {"action": "sendMessage", "event": envelope},
    }


def message(conversation: str, content: Any) -> dict[str, Any]:
    return {
        "type": "message_create",
        "client_msg_id": CLIENT_MSG_ID,
        "conversation_id": conversation,
        "content": content,
    }


def metadata(update: dict[str, Any]) -> dict[str, Any]:
    return post("metadata", {"metadata": update, "client_msg_id": CLIENT_MSG_ID, "conversation_id": A})


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


IN = INPUTS
EXPECTED: dict[str, list[dict[str, Any]]] = {
    "connect": [
        {
            "kind": "websocket upgrade",
            "method": "GET",
            "path": "/dev",
            "query": {"apiKey": ["<key1>"]},
            "headers": {},
            "body": None,
        }
    ],
    "create_user_first": [
        post(
            "conversation_start",
            {
                "userId": IN["user_id"],
                "userBasicInfo": IN["user_info"],
                "metadata": {**IN["metadata"], "private": IN["private_metadata"]},
            },
        )
    ],
    "create_bot_first": [
        # No private metadata given: npm still sends `private: {}` (its default argument is {}).
        post(
            "conversation_start",
            {
                "userId": IN["user_id"],
                "userBasicInfo": IN["bot_user_info"],
                "metadata": {**IN["bot_metadata"], "private": {}},
            },
        ),
        post("user_message", message(B, text(""))),  # bot-first: the empty trigger message
    ],
    "send_message_string": [post("user_message", message(A, text(IN["text"])))],
    "send_message_object": [post("user_message", message(A, IN["object_message"]))],
    "set_metadata": [metadata(IN["metadata_update"])],
    "set_private_metadata": [metadata({"private": IN["private_update"]})],
    "get_metadata": [post("metadata_request", {"conversation_id": A})],
    "send_action": [
        post(
            "action",
            {"type": "normal", "id": IN["action_id"], "data": IN["action_data"], "conversation_id": A},
        )
    ],
    "edit_message": [
        post(
            "edit_message",
            {**message(A, text(IN["edited_text"])), "message_id": "<message hello>"},
        )
    ],
    "get_transcript": [
        {
            "kind": "http",
            "method": "GET",
            "path": "/api/transcript",
            "query": {"conversation_id": [A]},
            "headers": {"x-api-key": "<key1>", "accept": "application/json"},
            "body": None,
        }
    ],
    "list_v1": [post("get_user_conversations", {"userId": IN["user_id"]})],
    "list_v2": [
        post(
            "get_user_conversations_v2",
            {
                "userId": IN["user_id"],
                "filter": IN["filter"],
                "search": IN["search"],
                "pagination": IN["pagination"],
                "apiKeys": ["<key1>", "<key2>"],
            },
        )
    ],
    "list_v2_filter_only": [
        post("get_user_conversations_v2", {"userId": IN["user_id"], "filter": IN["filter"]})
    ],
    "set_time_to_live": [metadata({"timeToLive": IN["ttl_days"]})],
    "delete_conversation": [post("delete_conversation", {"conversation_id": A, "softdelete": True})],
    "delete_user_conversations": [
        post("delete_user_conversations", {"userId": IN["user_id"], "softdelete": True})
    ],
    "disconnect": [{"kind": "websocket close", "code": 1000}],
}
assert tuple(EXPECTED) == STEPS


def describe(views: list[dict[str, Any]]) -> str:
    return json.dumps(views, indent=1, sort_keys=True)


# --- the tests -----------------------------------------------------------------------------------------------


def test_recordings_are_complete(npm_wire: Capture, python_wire: Capture) -> None:
    for capture in (npm_wire, python_wire):
        assert capture.recorder_errors == [], (
            f"{capture.client}: the recorder failed: {capture.recorder_errors}"
        )
        unparsable = [r for r in capture.records if isinstance(r, ParseFailure)]
        assert unparsable == [], f"{capture.client}: traffic the recorder could not parse: {unparsable}"
        unlabelled = [view(r, capture.names) for r in capture.records if r.step not in STEPS]
        assert unlabelled == [], f"{capture.client}: traffic outside any step: {describe(unlabelled)}"
    assert npm_wire.errors == {}, f"npm client calls failed: {npm_wire.errors}"


@pytest.mark.parametrize("name", STEPS)
def test_npm_client_sends(npm_wire: Capture, name: str) -> None:
    if name in npm_wire.errors:
        pytest.fail(f"npm client call `{name}` failed: {npm_wire.errors[name]}")
    sent = step_views(npm_wire, name)
    diffs = list(differences(EXPECTED[name], sent, reference="PROTOCOL.md"))
    assert sent == EXPECTED[name] and not diffs, (
        f"{name}: the npm client's wire is not the one PROTOCOL.md describes:\n"
        + "\n".join(diffs)
        + f"\nrecorded:\n{describe(sent)}"
    )


@pytest.mark.parametrize("name", STEPS)
def test_python_sdk_sends_what_npm_sends(npm_wire: Capture, python_wire: Capture, name: str) -> None:
    if name in python_wire.errors:
        pytest.fail(f"Python SDK call for `{name}` failed: {python_wire.errors[name]}")
    theirs, ours = step_views(npm_wire, name), step_views(python_wire, name)
    diffs = list(differences(theirs, ours))
    assert ours == theirs and not diffs, (
        f"{name}: the Python SDK's wire differs from the npm client's:\n"
        + "\n".join(diffs)
        + f"\nnpm:\n{describe(theirs)}\npython:\n{describe(ours)}"
    )


def test_client_msg_id_formats(npm_wire: Capture, python_wire: Capture) -> None:
    """The intended difference: npm's ids are ``<prefix>-<Date.now()>`` (they can collide within one ms);
    ours are UUIDs, so that a resent message is recognised and stored once (PROTOCOL.md §5)."""
    for capture in (npm_wire, python_wire):
        seen: dict[str, list[str]] = {}
        for record in capture.records:
            if not isinstance(record, HttpRequest) or not record.body:
                continue
            body = json.loads(record.body)
            payload = _payload(body)
            if payload is not None and "client_msg_id" in payload:
                seen.setdefault(body["event"]["event_type"], []).append(payload["client_msg_id"])
        formats = CLIENT_MSG_ID_FORMATS[capture.client]
        assert set(seen) == set(formats), f"{capture.client}: client_msg_id sent with {sorted(seen)}"
        for event_type, values in seen.items():
            for value in values:
                assert isinstance(value, str) and re.fullmatch(formats[event_type], value), (
                    f"{capture.client} {event_type}: client_msg_id {value!r} is not {formats[event_type]}"
                )
            if capture.client == "python":
                assert len(set(values)) == len(values), (
                    f"python reused a client_msg_id for {event_type}: {values}"
                )


def test_events_go_by_http_not_websocket(npm_wire: Capture, python_wire: Capture) -> None:
    """With the default transport, the socket only receives: no client event is sent as a frame."""
    for capture in (npm_wire, python_wire):
        frames = [
            view(r, capture.names)
            for r in capture.records
            if isinstance(r, WsMessage) and r.opcode < OP_CLOSE
        ]
        assert frames == [], f"{capture.client} sent WebSocket data frames: {describe(frames)}"
        upgrades = [r for r in capture.records if isinstance(r, HttpRequest) and r.is_websocket_upgrade]
        assert len(upgrades) == 1, f"{capture.client} opened {len(upgrades)} WebSockets"
