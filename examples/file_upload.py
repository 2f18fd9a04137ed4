"""Upload a file into a conversation, send it in a message, and read it back from the transcript.

    CAPTIVATE_API_KEY=cck_... CAPTIVATE_BASE_URL=http://127.0.0.1:8000 python examples/file_upload.py

CAPTIVATE_BASE_URL defaults to a local gateway; pass mode="prod" instead of base_url for the Captivate cloud
(and its file service).
"""

import asyncio
import os
import tempfile
from pathlib import Path

from captivate_chat_api import CaptivateChatAPI, UploadProgress


def show_progress(progress: UploadProgress) -> None:
    print(f"  sent {progress.sent} of {progress.total} bytes of {progress.filename}")


async def main() -> None:
    api_key = os.environ.get("CAPTIVATE_API_KEY", "YOUR_API_KEY")
    base_url = os.environ.get("CAPTIVATE_BASE_URL", "http://127.0.0.1:8000")
    with tempfile.TemporaryDirectory() as folder:
        notes = Path(folder) / "notes.txt"
        notes.write_text("Meeting notes: the launch moves to Thursday.\n")

        async with CaptivateChatAPI(api_key, base_url=base_url, request_timeout=20) as api:
            conv = await api.create_conversation("example-files", mode="user-first")
            await conv.set_time_to_live(7)  # stored files of this conversation expire after 7 days

            files = await conv.file_manager.create(notes, on_progress=show_progress)  # streamed from disk
            print("extracted text:", files.text_content.strip())
            stored = files[0].storage
            if stored is not None:
                print("stored as", stored.file_key, "- download:", stored.presigned_url)
                print("a fresh link:", await api.get_secure_file_url(stored.file_key, expires_in=600))

            await conv.send_message({"type": "text", "text": "Here are the notes", "files": files})
            for entry in await conv.get_transcript():  # expiring links are refreshed on the way
                for attachment in entry.attachments:
                    print(
                        f"{entry.sender}: {attachment.filename} ({attachment.type}) -> {attachment.download_url}"
                    )


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), timeout=25))
