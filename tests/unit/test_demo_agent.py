"""The demo agent's answers, called directly: each keyword, the greeting, actions and files."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from captivate_chat_api.protocol import AgentResponse, ChatRequest, IncomingAction
from captivate_chat_api.server.agents import DemoAgent


def answer(agent: DemoAgent | None = None, **request: Any) -> AgentResponse:
    return asyncio.run((agent or DemoAgent())(ChatRequest(session_id="c1", **request)))


def texts(response: AgentResponse) -> list[str]:
    return [m["text"] for m in response.response if m.get("type") == "text"]


def test_an_empty_start_is_greeted_and_text_is_echoed() -> None:
    assert texts(answer(user_input=""))[0].startswith("Hello! I am the Captivate Chat demo agent")
    assert texts(answer(user_input=None))[0].startswith("Hello!")
    assert texts(answer(user_input="  anything  ")) == ["You said: anything"]


@pytest.mark.parametrize(("said", "kind"), [("buttons", "button"), ("Cards", "cards"), ("TABLE", "table")])
def test_keywords_add_their_message_after_the_echo(said: str, kind: str) -> None:
    response = answer(user_input=said)
    assert response.response[0] == {"type": "text", "text": f"You said: {said}"}
    assert response.response[1]["type"] == kind and len(response.response) == 2


def test_a_card_links_to_the_gateway_only_when_its_url_is_known() -> None:
    (_, card_message) = answer(DemoAgent(lambda: "http://gw/"), user_input="cards").response
    assert card_message["cards"][0]["image_url"] == "http://gw/static/demo-card.svg"
    (_, bare) = answer(user_input="cards").response
    assert "image_url" not in bare["cards"][0] and "link" not in bare["cards"][0]


def test_actions_hand_off_and_switch() -> None:
    human = answer(user_input="human")
    assert texts(human) == ["You said: human", "Let me find a human for you."]
    assert [a.id for a in human.outgoing_action or []] == ["escalateToHuman"]
    switch = answer(user_input="switch Sales Bot")
    assert [(a.id, a.payload) for a in switch.outgoing_action or []] == [
        ("escalate_to_agent", {"agent_id": "Sales Bot", "reason": "asked"})
    ]
    action = answer(user_input="action")
    assert [(a.id, a.payload) for a in action.outgoing_action or []] == [
        ("demo_action", {"source": "demo", "text": "action"})
    ]
    assert answer(user_input="hello").outgoing_action is None


def test_a_title_changes_a_copy_of_the_metadata_only() -> None:
    request = ChatRequest(session_id="c1", user_input="title My Trip")
    response = asyncio.run(DemoAgent()(request))
    assert response.metadata is not None
    assert response.metadata.channel.custom["conversation_title"] == "My Trip"
    assert "conversation_title" not in request.metadata.channel.custom
    plain = ChatRequest(session_id="c1", user_input="hi")
    assert asyncio.run(DemoAgent()(plain)).metadata is plain.metadata  # handed back unchanged


def test_client_actions_and_files_are_acknowledged() -> None:
    acted = answer(user_input="ignored", incoming_action=[IncomingAction(id="pay")])
    assert texts(acted) == ["Action received: pay"]
    files = [{"filename": "a.txt", "textContent": {"type": "file_content", "text": "12345"}}]
    assert texts(answer(user_input="", files=files)) == ["Files received: a.txt (5 chars)"]
    assert texts(answer(user_input="see", files=files)) == [
        "You said: see",
        "Files received: a.txt (5 chars)",
    ]
    assert len(answer(user_input="big").response[1]["text"]) == 300 * 1024
