"""Server-Sent Events over plain ASGI.

The response starts at once (headers and a ``: ok`` comment with the first
event), then sends each event as it comes and a keep-alive comment whenever
nothing was sent for ``keepalive`` seconds, so proxies neither buffer nor
time out. A client that goes away is noticed both by an ``http.disconnect``
message and by a ``send`` that fails; either way the event source is
stopped and closed at once, so a run settles for what it produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .errors import error_event

__all__ = [
    "DEFAULT_KEEPALIVE",
    "SSE_HEADERS",
    "EventStream",
    "EventStreamResponse",
    "ServerSentEvent",
    "stream_events",
]

logger = logging.getLogger(__name__)

DEFAULT_KEEPALIVE = 15.0
"""Seconds of silence after which a keep-alive comment is sent."""

SSE_HEADERS: Final[Mapping[str, str]] = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}

_OPENING = b": ok\n\n"
_KEEPALIVE = b": keep-alive\n\n"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event: its name and its data (one line of JSON).

    Attributes:
        event: The event's name (``started``, ``delta``, …).
        data: The event's data.
    """

    event: str
    data: str

    @classmethod
    def of(cls, model: BaseModel) -> ServerSentEvent:
        """The event of an event model: named after its ``type``, its JSON as data."""
        name = getattr(model, "type", None)
        if not isinstance(name, str):
            raise TypeError(f"{type(model).__name__} has no event type")
        return cls(event=name, data=model.model_dump_json())

    def encode(self) -> bytes:
        """The event on the wire."""
        lines = "".join(f"data: {line}\n" for line in self.data.split("\n"))
        return f"event: {self.event}\n{lines}\n".encode()


@dataclass(frozen=True, slots=True)
class EventStream:
    """A stream whose first event is known: whatever could fail before it did.

    Build it with ``EventStream.start``, which runs the source up to its first
    event, so errors that should be ordinary HTTP errors are raised there.

    Attributes:
        first: The first event.
        rest: The source, suspended after ``first``; closing it cleans up.
    """

    first: ServerSentEvent
    rest: AsyncGenerator[ServerSentEvent, None]

    @classmethod
    async def start(cls, source: AsyncGenerator[ServerSentEvent, None]) -> EventStream:
        """Run ``source`` to its first event.

        Raises:
            RuntimeError: ``source`` ended without any event. Whatever else it
                raises before its first event propagates unchanged.
        """
        try:
            first = await anext(source)
        except StopAsyncIteration:
            raise RuntimeError("an event stream ended before its first event") from None
        return cls(first, source)


class EventStreamResponse(Response):
    """A Starlette response (a plain ASGI app) that sends an ``EventStream``.

    Args:
        stream: The events.
        keepalive: Seconds of silence before a keep-alive comment.
        headers: Extra headers.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        stream: EventStream,
        *,
        keepalive: float = DEFAULT_KEEPALIVE,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.stream = stream
        self.keepalive = keepalive
        self.status_code = 200
        self.background = None
        self.init_headers({**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await stream_events(
            self.stream, receive, send, keepalive=self.keepalive, headers=self.raw_headers
        )


class _End:
    pass


_END: Final = _End()


async def stream_events(
    stream: EventStream,
    receive: Receive,
    send: Send,
    *,
    keepalive: float = DEFAULT_KEEPALIVE,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """Send ``stream`` as Server-Sent Events until it ends or the client goes away.

    The source runs in a task of its own, so keep-alives go out while it
    waits; on a disconnect that task is cancelled and the source closed
    before this returns.

    Args:
        stream: The events.
        receive: The ASGI receive channel (the request body already read).
        send: The ASGI send channel.
        keepalive: Seconds of silence before a keep-alive comment.
        headers: Raw response headers, ``content-type`` included.
    """
    queue: asyncio.Queue[ServerSentEvent | _End] = asyncio.Queue(maxsize=64)

    async def pump() -> None:
        try:
            async for event in stream.rest:
                await queue.put(event)
        except Exception as exc:
            await queue.put(ServerSentEvent.of(error_event(exc)))
        await queue.put(_END)

    async def watch() -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:  # a server that cannot receive any more has lost the client too
            logger.info("event stream client went away (receive failed)")

    producer = asyncio.create_task(pump())
    watcher = asyncio.create_task(watch())
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(_chunk(_OPENING + stream.first.encode()))
        while not watcher.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, watcher}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                if not watcher.done():
                    await send(_chunk(_KEEPALIVE))
                continue
            item = getter.result()
            if isinstance(item, _End):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                break
            await send(_chunk(item.encode()))
    except OSError:
        logger.info("event stream client went away (send failed)")
    finally:
        watcher.cancel()
        if not producer.done():
            producer.cancel()
        # wait() rather than await: the producer's CancelledError is not ours.
        await asyncio.wait({producer, watcher})
        with contextlib.suppress(Exception):
            await stream.rest.aclose()


def _chunk(body: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": True}
