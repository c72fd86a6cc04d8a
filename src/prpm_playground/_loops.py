"""Per-event-loop asyncio primitives."""

from __future__ import annotations

import asyncio
import weakref

__all__ = ["LoopLock"]


class LoopLock:
    """An asyncio lock per event loop.

    An ``asyncio.Lock`` belongs to the loop it first waited in; a storage
    may serve one loop after another (``ResetJob.run_sync`` runs each call in
    a fresh one), so each loop gets its own.
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> asyncio.Lock:
        """The lock of the running loop."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock
