"""The client programs the banner prints: complete, valid as pasted, and ending by themselves.

tests/test_snippets.py runs both (Python and node) against a live gateway, as a new user would.
"""

from __future__ import annotations


def npm_snippet(http_url: str, key: str) -> str:
    """A CommonJS program (``app.js``) for the npm client 7.0.0, pointed at the gateway at ``http_url``."""
    ws_url = "ws" + http_url.removeprefix("http")
    return f"""\
const WS = require('ws');
globalThis.WebSocket = class extends WS {{
  constructor(url, protocols) {{ super(url.replace(/^wss:\\/\\/[^/]+/, '{ws_url}'), protocols); }}
}};
const cloudFetch = globalThis.fetch;
globalThis.fetch = (url, options) =>
  cloudFetch(String(url).replace(/^https:\\/\\/channel\\.(prod|dev)\\.captivat\\.io/, '{http_url}'), options);
const {{ CaptivateChatAPI }} = require('captivate-chat-api');

async function main() {{
  const api = await CaptivateChatAPI.create('{key}');
  const conversation = await api.createConversation('user-1', {{ name: 'Ada' }}, {{}}, 'user-first');
  conversation.onMessage((content, kind) => {{
    console.log(kind, content.text);
    api.dispose();
    process.exit(0); // createConversation leaves a 10 s timer of the client's behind: do not wait for it
  }});
  await conversation.sendMessage('Hello!');
}}
main();"""


def python_snippet(http_url: str, key: str) -> str:
    """A program for this SDK that sends one message, prints the reply and ends."""
    return f"""\
import asyncio

from captivate_chat_api import BotMessage, CaptivateChatAPI


async def main() -> None:
    async with CaptivateChatAPI('{key}', base_url='{http_url}') as api:
        conversation = await api.create_conversation('user-1', {{'name': 'Ada'}}, mode='user-first')
        events = conversation.events()
        await conversation.send_message('Hello!')
        async for event in events:
            if isinstance(event, BotMessage):
                print(event.content['text'])
                break


asyncio.run(main())"""
