"""The ChatRequest an agent gets is built without validation (runner.build_request): it must be exactly
what pydantic's own constructors make of the same values."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from captivate_chat_api.protocol import AgentMetadata, ChannelMetadata, ChatRequest, IncomingAction
from captivate_chat_api.protocol.agent import InternalMetadata, UserInfo
from captivate_chat_api.server.agents.runner import build_request
from captivate_chat_api.server.store import Channel, ConversationRecord


def state(model: Any) -> Any:
    """Everything pydantic keeps on an instance, recursively."""
    if isinstance(model, BaseModel):
        return (
            type(model),
            {k: state(v) for k, v in model.__dict__.items()},
            model.__pydantic_fields_set__,
            model.__pydantic_extra__,
            model.__pydantic_private__,
        )
    if isinstance(model, list):
        return [state(v) for v in model]
    return model


def test_the_built_request_is_what_model_construct_makes() -> None:
    channel = Channel("ch_1", "c")
    conversation = ConversationRecord(
        "c1",
        "ch_1",
        "u",
        {"name": "Ann", "email": "a@b.c"},
        {"k": 1},
        {"p": 2},
        3,
        "t0",
        "t1",
        has_livechat=True,
    )
    action = IncomingAction(id="a1", payload={"x": 1})
    built = build_request(conversation, user_input="hi", action=action, channel=channel, files=[{"f": 1}])
    constructed = ChatRequest.model_construct(
        session_id="c1",
        user_input="hi",
        files=[{"f": 1}],
        incoming_action=[action],
        hasLivechat=True,
        metadata=AgentMetadata.model_construct(
            internal=InternalMetadata.model_construct(
                channelMetadata=ChannelMetadata.model_construct(
                    user=UserInfo.model_construct(firstName="Ann", email="a@b.c"),
                    channelMetadata={"channel": "custom-channel", "channelData": {"channelId": "ch_1"}},
                    custom={"k": 1},
                    private={"p": 2},
                    conversationCreatedAt="t0",
                    conversationUpdatedAt="t1",
                )
            )
        ),
    )
    assert state(built) == state(constructed)
    assert built == ChatRequest.model_validate(built.model_dump())
    assert built.model_dump(exclude_unset=True) == constructed.model_dump(exclude_unset=True)
    copy = built.model_copy(deep=True)  # what an agent may do with it
    copy.metadata.internal.channelMetadata.custom["k"] = 2
    assert conversation.metadata == {"k": 1}, "the agent edits its own copy of the metadata"


async def test_the_demo_agents_answer_is_what_model_construct_makes() -> None:
    from captivate_chat_api.protocol import AgentResponse
    from captivate_chat_api.server.agents.demo import DemoAgent

    channel = Channel("ch_1", "c")
    conversation = ConversationRecord("c1", "ch_1", "u", {}, {"k": 1}, {}, 3, "t0", "t1")
    request = build_request(conversation, user_input="hi", action=None, channel=channel)
    answer = await DemoAgent()(request)
    constructed = AgentResponse.model_construct(
        response=[{"type": "text", "text": "You said: hi"}],
        session_id="c1",
        metadata=request.metadata,
        outgoing_action=None,
        hasLivechat=False,
    )
    assert state(answer) == state(constructed)
    assert answer == AgentResponse.model_validate(answer.model_dump())
    assert answer.model_dump(exclude_unset=True) == constructed.model_dump(exclude_unset=True)
