# example-gateway-args: --agent webhook:http://127.0.0.1:{agent_port}/captivate
# example-server: {python} -m uvicorn webhook_agent:app --port {agent_port}
# example-client: quickstart.py
# example-expect: You asked: Hello!
"""A webhook agent written with the Captivate agent library (`pip install captivate-ai-api fastapi uvicorn`).

Start the gateway pointed at it; it prints the channel's webhook secret once:

    captivate-chat serve --agent webhook:http://127.0.0.1:9000/captivate

then run this agent with that secret (and, to answer later by push, a `push` token of the channel from
`captivate-chat tokens create --channel CH --role push`):

    CAPTIVATE_WEBHOOK_SECRET=whsec_… CAPTIVATE_PUSH_TOKEN=cca_… uvicorn webhook_agent:app --port 9000
"""

import os

from captivate_ai_api.Captivate import Captivate, TextMessageModel
from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from captivate_chat_api.webhooks import WebhookVerificationError, verify_webhook

SECRET = os.environ.get("CAPTIVATE_WEBHOOK_SECRET", "the channel's webhook secret")
GATEWAY = os.environ.get("CAPTIVATE_BASE_URL", "http://127.0.0.1:8000")
PUSH_TOKEN = os.environ.get("CAPTIVATE_PUSH_TOKEN", "cca_…")  # a `push` agent token of this channel
app = FastAPI()


@app.post("/captivate")
async def agent(request: Request, background: BackgroundTasks) -> Response:
    body = await request.body()  # the raw bytes: verify before parsing
    try:
        verify_webhook(SECRET, body, request.headers)  # signature + 5-minute replay window
    except WebhookVerificationError:
        return Response(status_code=401)
    captivate = Captivate.create(await request.json())
    text = captivate.get_user_input() or ""
    if text == "human":
        captivate.set_response([TextMessageModel(text="Connecting you to a human.")])
        captivate.escalate_to_human()  # -> conversation_update livechat_started
    elif text == "later":
        background.add_task(answer_later, captivate)
        return Response(status_code=200)  # empty: the answer comes by push
    else:
        captivate.set_metadata("last_topic", text)  # custom metadata: the client sees it
        captivate.set_private_metadata("crm_id", "c-42")  # private: only agents see it
        captivate.set_response([TextMessageModel(text=f"You asked: {text}")])
    return JSONResponse(captivate.get_response())


async def answer_later(captivate: Captivate) -> None:
    captivate.set_response([TextMessageModel(text="Here is the answer.")])
    captivate.DEV_URL_V2 = f"{GATEWAY}/api/channel/v2/sendMessage?token={PUSH_TOKEN}"
    await captivate.async_send_message()  # the library sends no auth header: the token rides in the URL
