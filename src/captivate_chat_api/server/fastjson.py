"""JSON on the gateway's hot path: orjson, with the stdlib as the fallback for what orjson refuses.

The output is the same JSON text as ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)`` up to
the spelling of some floats (``1e16`` rather than ``1e+16``): same values, same wire names.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_NUMBER = re.compile(r"\d{19}")


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits, non-string keys: the stdlib writes them
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """For JSON we wrote ourselves (stored rows). orjson would read an integer beyond 64 bits as a float:
    text with a run of 19+ digits goes to the stdlib, which keeps it exact."""
    if _LONG_NUMBER.search(text if isinstance(text, str) else text.decode()) is not None:
        return json.loads(text)
    return orjson.loads(text)


def frame(event_type: str, payload: dict[str, Any], request_id: str | None = None) -> str:
    """A platform frame, as :func:`captivate_chat_api.protocol.encode_frame` writes it."""
    if request_id is None:
        return dumps({"event": {"event_type": event_type, "event_payload": payload}})
    return dumps({"event": {"event_type": event_type, "event_payload": payload}, "request_id": request_id})
