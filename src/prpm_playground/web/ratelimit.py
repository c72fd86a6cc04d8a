"""Per-user rate limits: runs and estimates per minute, and open streams.

Per-minute counts live in the database (``RateLimitStorage``) in fixed
one-minute windows, so every app instance sharing the database enforces the
same limit. Open streams are counted in memory: that cap holds per ASGI app,
which is what it protects (its connections and tasks).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .._clock import Clock, read_clock
from ..config import RateLimits
from ..errors import RateLimited
from ..storage.base import RateLimitStorage

__all__ = ["Guard", "RateLimiter", "StreamSlots"]

logger = logging.getLogger(__name__)

WINDOW = timedelta(minutes=1)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class RateLimiter:
    """Fixed-window counters per ``(bucket, user)``, kept in shared storage.

    A request that goes over the limit is refused and still counted, so a
    client that keeps hammering stays refused until the window ends.

    Args:
        storage: Where the counters live (e.g. ``SQLAlchemyStorage``).
        clock: Returns the current aware UTC time.
        window: Length of a window.
    """

    def __init__(
        self, storage: RateLimitStorage, clock: Clock, *, window: timedelta = WINDOW
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._window = window
        self._pruned: datetime | None = None

    async def hit(self, bucket: str, user_id: str, limit: int | None, amount: int = 1) -> None:
        """Count ``amount`` hits for the user in ``bucket``.

        Args:
            bucket: What is limited (``runs``, ``estimates``).
            user_id: The user.
            limit: Most hits per window; None for no limit (nothing is counted).
            amount: Hits this request makes.

        Raises:
            RateLimited: Over the limit; ``retry_after`` is the rest of the window.
        """
        if limit is None:
            return
        now = read_clock(self._clock)
        start = _window_start(now, self._window)
        count = await self._storage.rate_limit_hit(f"{bucket}:{user_id}", start, amount)
        await self._prune(start)
        if count > limit:
            wait = (start + self._window - now).total_seconds()
            raise RateLimited(
                f"too many requests: at most {limit} {bucket} per "
                f"{_describe(self._window)}; try again in {math.ceil(wait)} s",
                retry_after=wait,
            )

    async def _prune(self, start: datetime) -> None:
        # Once per window per instance is plenty: old rows only cost space.
        if self._pruned == start:
            return
        self._pruned = start
        try:
            await self._storage.rate_limit_prune(start - self._window)
        except Exception:  # pruning is housekeeping; a failure must not refuse a run
            logger.warning("pruning rate-limit counters failed", exc_info=True)


class StreamSlots:
    """How many event streams each user has open, in this process.

    Args:
        limit: Most open streams per user; None for no limit.
        retry_after: Seconds a refused client is told to wait.
    """

    def __init__(self, limit: int | None, retry_after: int) -> None:
        self._limit = limit
        self._retry_after = retry_after
        self._open: dict[str, int] = {}

    def open(self, user_id: str) -> int:
        """Streams the user has open now."""
        return self._open.get(user_id, 0)

    def acquire(self, user_id: str) -> Callable[[], None]:
        """Take a slot; return the function that gives it back (safe to call twice).

        Raises:
            RateLimited: The user already has ``limit`` streams open.
        """
        count = self._open.get(user_id, 0)
        if self._limit is not None and count >= self._limit:
            raise RateLimited(
                f"too many open streams: at most {self._limit} at once",
                retry_after=self._retry_after,
            )
        self._open[user_id] = count + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._open.get(user_id, 1) - 1
            if left > 0:
                self._open[user_id] = left
            else:
                self._open.pop(user_id, None)

        return release


class Guard:
    """The limits one web app enforces.

    Args:
        storage: Where per-minute counters live.
        limits: The limits.
        clock: Returns the current aware UTC time.
    """

    def __init__(self, storage: RateLimitStorage, limits: RateLimits, clock: Clock) -> None:
        self.limits = limits
        self.limiter = RateLimiter(storage, clock)
        self.streams = StreamSlots(limits.max_concurrent_streams, limits.stream_retry_after)

    async def runs(self, user_id: str, count: int = 1) -> None:
        """Count ``count`` model runs; ``RateLimited`` over ``runs_per_minute``."""
        await self.limiter.hit("runs", user_id, self.limits.runs_per_minute, count)

    async def estimates(self, user_id: str) -> None:
        """Count an estimate; ``RateLimited`` over ``estimates_per_minute``."""
        await self.limiter.hit("estimates", user_id, self.limits.estimates_per_minute)


def _window_start(now: datetime, window: timedelta) -> datetime:
    windows = (now - _EPOCH) // window
    return _EPOCH + windows * window


def _describe(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    return "minute" if seconds == 60 else f"{seconds} s"
