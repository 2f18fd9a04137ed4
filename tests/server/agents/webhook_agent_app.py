"""A real AI agent behind a webhook, written with PyPI ``captivate-ai-api`` as a customer would write one.

Run as a script (its own process, as a deployed agent is)::

    python webhook_agent_app.py [--port PORT]      # prints "agent listening on http://127.0.0.1:PORT"

Environment: ``AGENT_SECRET`` (the webhook secret it verifies with ``verify_webhook``), ``GATEWAY_URL`` and
``PUSH_TOKEN`` (where ``async_send_message`` pushes a late answer). ``GET /_log`` lists every request it
received (for tests to count attempts); what it answers depends on the user's text (see ``answer``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import warnings
from typing import Any

import httpx
import uvicorn
from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from captivate_chat_api.webhooks import DELIVERY_HEADER, WebhookVerificationError, verify_webhook

with warnings.catch_warnings():  # captivate-ai-api 0.6.3 uses pydantic's deprecated class Config
    warnings.simplefilter("ignore", DeprecationWarning)
    from captivate_ai_api.Captivate import (
        ActionModel,
        ButtonMessageModel,
        Captivate,
        CardCollectionModel,
        CardMessageModel,
        TextMessageModel,
    )

SECRET = os.environ.get("AGENT_SECRET", "")
GATEWAY_URL = os.environ.get("GATEWAY_URL", "")
PUSH_TOKEN = os.environ.get("PUSH_TOKEN", "")

app = FastAPI()
received: list[dict[str, Any]] = []
pushes: list[dict[str, Any]] = []


@app.get("/_log")
async def log() -> dict[str, Any]:
    return {"received": received, "pushes": pushes}


@app.post("/agent")
async def agent(request: Request, background: BackgroundTasks) -> Response:
    body = await request.body()
    entry: dict[str, Any] = {
        "delivery": request.headers.get(DELIVERY_HEADER),
        "content_type": request.headers.get("content-type"),
        "signed": "x-captivate-signature" in request.headers,
    }
    received.append(entry)
    try:
        verify_webhook(SECRET, body, request.headers)
    except WebhookVerificationError as exc:
        entry["rejected"] = str(exc)
        return JSONResponse({"error": str(exc)}, status_code=401)
    data = json.loads(body)
    entry.update(session_id=data["session_id"], text=data.get("user_input"))
    captivate = Captivate.create(data)
    return await answer(captivate, entry, data, background)


async def answer(
    captivate: Captivate, entry: dict[str, Any], data: dict[str, Any], background: BackgroundTasks
) -> Response:
    text = (captivate.get_user_input() or "").strip()
    attempts = sum(1 for e in received if e["delivery"] == entry["delivery"])
    actions = captivate.incoming_action or []
    if actions:
        captivate.set_response(
            [TextMessageModel(text=f"Agent got action {actions[0].id} {json.dumps(actions[0].payload)}")]
        )
    elif text == "":
        captivate.set_response([TextMessageModel(text="Hello from the webhook agent.")])
    elif text == "buttons":
        captivate.set_response(
            [
                TextMessageModel(text="Pick one"),
                ButtonMessageModel(buttons={"title": "Plan", "options": ["Basic", "Pro"]}),
                CardCollectionModel(
                    cards=[
                        CardMessageModel(
                            text="Pro",
                            description="All in",
                            image_url="https://example.com/p.png",
                            link="https://example.com/pro",
                        )
                    ]
                ),
            ]
        )
    elif text == "action":
        captivate.set_response([TextMessageModel(text="Opening the page.")])
        captivate.set_outgoing_action(
            [ActionModel(id="open_url", payload={"url": "https://example.com/help"})]
        )
    elif text == "meta":
        captivate.set_metadata("plan", "gold")
        captivate.set_private_metadata("crm_id", "c-42")
        captivate.set_conversation_title("Order help")
        captivate.set_response([TextMessageModel(text="Noted.")])
    elif text == "whoami":
        user = captivate.get_user()
        seen = {
            "plan": captivate.get_metadata("plan"),
            "crm_id": captivate.get_private_metadata("crm_id"),
            "firstName": user.firstName if user else None,
        }
        captivate.set_response([TextMessageModel(text=f"I see {json.dumps(seen, sort_keys=True)}")])
    elif text == "human":
        captivate.set_response([TextMessageModel(text="Connecting you to a human.")])
        captivate.escalate_to_human()
    elif text == "later":
        background.add_task(push_later, data)
        return Response(status_code=200)  # empty body: the answer comes by async push
    elif text == "fail500":
        return JSONResponse({"error": "the model crashed"}, status_code=500)
    elif text == "fail400":
        return JSONResponse({"error": "I do not like this request"}, status_code=400)
    elif text == "busy" and attempts == 1:
        return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "0.2"})
    elif text == "badjson":
        return Response(b'{"response": [', status_code=200, media_type="application/json")
    elif text == "badbody":
        return JSONResponse({"response": "not a list", "session_id": captivate.get_session_id()})
    elif text == "slow":
        await asyncio.sleep(5)
        captivate.set_response([TextMessageModel(text="Sorry, I was slow.")])
    else:
        captivate.set_response([TextMessageModel(text=f"Agent heard: {text}")])
    return JSONResponse(captivate.get_response())


async def push_later(data: dict[str, Any]) -> None:
    await asyncio.sleep(0.2)
    captivate = Captivate.create(data)
    captivate.set_response([TextMessageModel(text="Here is the answer, later.")])
    captivate.DEV_URL_V2 = f"{GATEWAY_URL}/api/channel/v2/sendMessage?token={PUSH_TOKEN}"
    try:
        pushes.append({"session_id": data["session_id"], "result": await captivate.async_send_message()})
    except httpx.HTTPError as exc:  # recorded for the test to see
        pushes.append({"session_id": data["session_id"], "error": repr(exc)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    port = parser.parse_args().port
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)  # connections queue from here on, before uvicorn is up
    print(f"agent listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    # a 0.25 s grace on SIGTERM: a "slow" turn still asleep (its caller long gone, timed out) is cancelled
    # instead of holding the test's teardown for the rest of its 5 s (every other answer takes milliseconds)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=0.25)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
