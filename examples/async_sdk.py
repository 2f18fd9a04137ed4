"""The async SDK: callbacks and the event iterator, metadata, a client action, the transcript."""

import asyncio
import os

from captivate_chat_api import Action, BotMessage, CaptivateChatAPI

API_KEY = os.environ.get("CAPTIVATE_API_KEY", "YOUR_API_KEY")
BASE_URL = os.environ.get("CAPTIVATE_BASE_URL", "http://127.0.0.1:8000")


async def main() -> None:
    async with CaptivateChatAPI(API_KEY, base_url=BASE_URL) as api:  # or mode="prod" for the Captivate cloud
        conversation = await api.create_conversation(
            "user-123",
            user_basic_info={"name": "John"},
            metadata={"plan": "pro"},
            mode="user-first",
            private_metadata={"crm_id": 7},
        )

        @conversation.on_message  # kind: "ai_agent" | "human_agent" | "error"
        def show(message: object, kind: str) -> None:
            print(kind, message)

        events = conversation.events()  # BotMessage, LivechatMessage, Action, ConversationUpdate, ...
        sent = await conversation.send_message("action")  # SentMessage(message_id, seq, client_msg_id, ...)
        print("stored as seq", sent.seq)
        async for event in events:
            if isinstance(event, Action):  # the demo agent answers "action" with an action, then text
                print("action", event.actions)
            if isinstance(event, BotMessage):
                break

        await conversation.set_metadata({"plan": "enterprise"})
        print("metadata", await conversation.get_metadata())
        for entry in await conversation.get_transcript():
            print(entry.seq, entry.sender, entry.content)


asyncio.run(main())
