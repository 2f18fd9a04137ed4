# example-gateway-args: --agent python:python_agent:answer
# example-client: quickstart.py
# example-expect: Echo: Hello!
"""An agent in Python, called in the gateway's process. In the folder holding this file, run:

    captivate-chat serve --agent python:python_agent:answer

(a module of the working directory is found; the gateway imports it at start and refuses to start if
it cannot). Then any client, e.g. quickstart.py, gets "Echo: ..." back.
"""

from captivate_chat_api.protocol import AgentResponse, ChatRequest


async def answer(request: ChatRequest) -> AgentResponse:
    return AgentResponse(
        response=[{"type": "text", "text": f"Echo: {request.user_input}"}],
        session_id=request.session_id,
    )
