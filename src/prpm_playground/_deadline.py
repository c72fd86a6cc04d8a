"""A deadline for awaiting a stream's items, with one timer for the whole stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

__all__ = ["DeadlinePassed", "StreamDeadline"]

_T = TypeVar("_T")


class DeadlinePassed(Exception):
    """The stream's deadline passed while (or before) its next item was awaited."""


class StreamDeadline:
    """An absolute deadline on the event loop's clock for one stream.

    ``next`` awaits the stream's next item before the deadline. One timer
    serves the whole stream (a timeout scope per item would cost more than
    relaying the item): it cancels the task only while the task waits in
    ``next``, never the consumer's code between items, and a deadline that
    passes in between is noticed at the next call. ``close`` drops the timer.
    """

    __slots__ = ("_cancelling", "_fired", "_timer", "_waiting", "at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = asyncio.get_running_loop().time() + seconds
        self._timer: asyncio.TimerHandle | None = None
        self._waiting: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._fired = False

    @property
    def passed(self) -> bool:
        """True once the deadline is past."""
        return asyncio.get_running_loop().time() >= self.at

    async def next(self, iterator: AsyncIterator[_T]) -> _T:
        """The next item of ``iterator``, awaited before the deadline.

        Raises:
            DeadlinePassed: The deadline passed first.
            StopAsyncIteration: The stream ended.
        """
        loop = asyncio.get_running_loop()
        if loop.time() >= self.at:
            raise DeadlinePassed(self.seconds)
        task = asyncio.current_task()
        assert task is not None  # a coroutine awaited on a running loop
        if self._timer is None:
            self._timer = loop.call_at(self.at, self._expire)
        self._waiting, self._cancelling = task, task.cancelling()
        try:
            return await iterator.__anext__()
        except asyncio.CancelledError as exc:
            # As asyncio.timeout decides it: ours, unless the caller cancelled too.
            if self._fired and task.uncancel() <= self._cancelling:
                raise DeadlinePassed(self.seconds) from exc
            raise
        finally:
            self._waiting = None

    def close(self) -> None:
        """Drop the timer."""
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        if self._waiting is not None and not self._fired:
            self._fired = True
            self._waiting.cancel()
