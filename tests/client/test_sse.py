"""The one SSE parser (binder_service_client.sse), line by line, as the HTML standard reads a stream."""

from __future__ import annotations

import json

import pytest
from binder_service_client.sse import Message, SSEParser, messages


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["data: {}", ""], [Message("{}")]),
        (["data:{}", ""], [Message("{}")]),  # the space after the colon is optional
        (["data:  two", ""], [Message(" two")]),  # only one space is stripped
        (["data: a", "data: b", ""], [Message("a\nb")]),
        ([":keepalive", "", "data: x", ""], [Message("x")]),  # comments dispatch nothing
        (["id: 7", "data: x", ""], [Message("x", id="7")]),
        (["id: 7", "", "data: x", ""], [Message("x", id="7")]),  # the last id carries over
        (["id: 7", "data: x", "", "data: y", ""], [Message("x", id="7"), Message("y", id="7")]),
        (["event: end", "data: x", ""], [Message("x", event="end")]),
        (["retry: 10", "whatever: 1", "data", ""], [Message("")]),  # a field without a colon
        (["id: a\0b", "data: x", ""], [Message("x")]),  # an id with NUL is ignored
        (["data: cut off"], []),  # a stream that ends mid-message drops it
        (["", "", ""], []),
    ],
)
def test_parse(lines: list[str], expected: list[Message]) -> None:
    assert list(messages(lines)) == expected


def test_last_id_is_kept_for_a_reconnect() -> None:
    parser = SSEParser(last_id="3")
    assert list(messages(["data: x", ""], parser)) == [Message("x", id="3")]
    list(messages(["id: 9", "data: y", ""], parser))
    assert parser.last_id == "9"


def test_message_json() -> None:
    assert Message('{"phase": "ready"}').json() == {"phase": "ready"}
    with pytest.raises(json.JSONDecodeError):
        Message("{not json").json()
