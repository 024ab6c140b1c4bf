"""Server-Sent Events, parsed line by line (sans-IO): the one parser of every binder-service client.

`SSEParser.feed(line)` takes one line (without its line ending) and returns a `Message` when a blank
line completes one. Comments (``:keepalive``) and unknown fields are skipped, as the HTML standard says;
the last ``id:`` is remembered across messages, so a reconnecting client knows its `Last-Event-ID`.
`messages()` and `amessages()` run the parser over sync and async line iterators (e.g. httpx's
``iter_lines()``/``aiter_lines()``). Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Message", "SSEParser", "amessages", "messages"]


@dataclass(frozen=True)
class Message:
    """One event of a stream: its data lines joined by newlines, its type and the stream's last id."""

    data: str
    event: str = "message"
    id: str | None = None

    def json(self) -> Any:
        """The data as JSON; ValueError when it is not."""
        return json.loads(self.data)


class SSEParser:
    """Feed lines in, get messages out; `last_id` is the id a reconnect sends as `Last-Event-ID`."""

    def __init__(self, last_id: str | None = None) -> None:
        self.last_id = last_id
        self._data: list[str] = []
        self._event = ""

    def feed(self, line: str) -> Message | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the service's keepalive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None  # `retry:` and unknown fields are ignored

    def _dispatch(self) -> Message | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None  # an id-only block or stray blank line dispatches nothing
        return Message("\n".join(data), event or "message", self.last_id)


def messages(lines: Iterable[str], parser: SSEParser | None = None) -> Iterator[Message]:
    """The messages of a stream of lines (a message the stream cut off is dropped, as browsers do)."""
    parser = parser or SSEParser()
    for line in lines:
        message = parser.feed(line)
        if message is not None:
            yield message


async def amessages(lines: AsyncIterable[str], parser: SSEParser | None = None) -> AsyncIterator[Message]:
    """`messages` for an async stream of lines."""
    parser = parser or SSEParser()
    async for line in lines:
        message = parser.feed(line)
        if message is not None:
            yield message
