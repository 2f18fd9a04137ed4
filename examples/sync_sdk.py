"""The blocking facade: for scripts and notebooks, no event loop to manage."""

import os

from captivate_chat_api import BotMessage
from captivate_chat_api.sync import CaptivateChatAPI

API_KEY = os.environ.get("CAPTIVATE_API_KEY", "YOUR_API_KEY")
BASE_URL = os.environ.get("CAPTIVATE_BASE_URL", "http://127.0.0.1:8000")

with CaptivateChatAPI(API_KEY, base_url=BASE_URL) as api:
    conversation = api.create_conversation("user-1", mode="user-first")
    events = conversation.events(timeout=10)  # TimeoutError if no event within 10 s
    conversation.send_message("hello")
    for event in events:
        if isinstance(event, BotMessage):
            print(event.content["text"])  # You said: hello
            break
    conversation.set_metadata({"plan": "pro"})
    print(conversation.get_metadata(), len(conversation.get_transcript()), "transcript entries")
