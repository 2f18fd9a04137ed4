import asyncio
import os

from captivate_chat_api import BotMessage, CaptivateChatAPI


async def main() -> None:
    key = os.environ["CAPTIVATE_API_KEY"]
    base_url = os.environ.get("CAPTIVATE_BASE_URL", "http://127.0.0.1:8000")
    async with CaptivateChatAPI(key, base_url=base_url) as api:
        conversation = await api.create_conversation("user-1", {"name": "Ada"}, mode="user-first")
        events = conversation.events()
        await conversation.send_message("Hello!")
        async for event in events:
            if isinstance(event, BotMessage):
                print(event.content["text"])  # You said: Hello!
                break


asyncio.run(main())
