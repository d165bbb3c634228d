"""What an endpoint hands back to the HTTP layer: a JSON body or a list of SSE events.

Builders produce a complete ``Reply`` before anything is written, so the request log
(with status and usage) is final by the time the client reads the last byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._text import compact


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event; ``name`` is the ``event:`` line the Responses API adds."""

    data: str
    name: str | None = None

    def encode(self) -> bytes:
        head = f"event: {self.name}\n" if self.name is not None else ""
        return f"{head}data: {self.data}\n\n".encode()


#: The sentinel that ends Chat Completions and legacy Completions streams.
DONE = Event("[DONE]")


def chunk_event(chunk: dict[str, Any]) -> Event:
    """A Chat/Completions chunk: a bare ``data:`` line of compact JSON, as recorded."""
    return Event(compact(chunk))


def typed_event(event: dict[str, Any]) -> Event:
    """A Responses API event: ``event: <type>`` followed by its JSON."""
    return Event(compact(event), name=str(event["type"]))


@dataclass(slots=True)
class Reply:
    """A finished answer: ``body`` for JSON responses, ``events`` for SSE streams.

    ``body`` is sent as JSON, except ``str`` (sent as text) and ``bytes`` (sent as is),
    both with ``content_type``. ``usage`` is the usage object the reply carries (None when
    it carries none), which the request log records.
    """

    status: int = 200
    body: Any = None
    events: list[Event] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    content_type: str = "text/plain; charset=utf-8"
