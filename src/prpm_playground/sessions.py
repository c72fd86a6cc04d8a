"""Saved sessions: listing, reading, deleting, sharing, forking and feedback.

A session belongs to the user whose run started it. Every method that names a
session answers ``NotFound`` to anyone else, exactly as for a session that
does not exist, so ids never reveal whether someone else's session exists.
Shares are public by token: a frozen snapshot of the conversation as it was
when shared, without the owner's identity or the session's id.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
from datetime import UTC, datetime

from ._clock import Clock, read_clock, utc_now
from ._ids import new_id
from ._validation import check_int, check_storable, check_text_id
from .errors import InvalidRequest, NotFound
from .models import (
    Feedback,
    Session,
    SessionPage,
    SessionSummary,
    SharedExchange,
    SharedSession,
    ShareLink,
    Usage,
)
from .storage.base import (
    ExchangeRecord,
    FeedbackRecord,
    SessionRecord,
    SessionStorage,
    ShareRecord,
)

__all__ = ["MAX_COMMENT_LENGTH", "MAX_LIST_LIMIT", "MAX_TITLE_LENGTH", "SessionService"]

logger = logging.getLogger(__name__)

MAX_LIST_LIMIT = 100
"""Most sessions one page of ``SessionService.list`` returns."""
MAX_COMMENT_LENGTH = 1000
"""Longest feedback comment, in characters."""
MAX_TITLE_LENGTH = 80
"""Longest session title, in characters (the ellipsis included)."""

_TOKEN_BYTES = 32  # 256 bits; base64url without padding: 43 characters
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_CURSOR_LENGTH = 512


class SessionService:
    """Users' saved sessions, share links and feedback.

    ``playground.sessions`` is an instance of this class.

    Args:
        storage: Where sessions are kept (e.g. ``SQLAlchemyStorage``).
        clock: Returns the current aware UTC time; defaults to the system clock.

    Example:
        ```python
        sessions = SessionService(storage)
        page = await sessions.list("user-1", limit=20)
        link = await sessions.share("user-1", page.sessions[0].id)
        shared = await sessions.get_shared(link.token)   # what the public sees
        ```
    """

    def __init__(self, storage: SessionStorage, *, clock: Clock | None = None) -> None:
        self._storage = storage
        self._clock: Clock = clock or utc_now

    async def get(self, user_id: str, session_id: str) -> Session:
        """Return one of the user's sessions with its whole conversation.

        Args:
            user_id: The caller.
            session_id: The session.

        Raises:
            NotFound: No such session, or it belongs to someone else.
            InvalidRequest: A malformed id.
        """
        return _session(await self._owned(user_id, session_id))

    async def delete(self, user_id: str, session_id: str) -> None:
        """Delete one of the user's sessions with its exchanges, feedback and share links.

        Share links stop working at once. Credits already spent stay spent.

        Args:
            user_id: The caller.
            session_id: The session.

        Raises:
            NotFound: No such session (also on a second delete), or it belongs
                to someone else.
            InvalidRequest: A malformed id.
        """
        record = await self._owned(user_id, session_id)
        if not await self._storage.delete_session(record.id):
            raise _not_found(session_id)  # deleted concurrently
        logger.info("session %s deleted", record.id)

    async def share(self, user_id: str, session_id: str) -> ShareLink:
        """Share a frozen snapshot of one of the user's sessions.

        The snapshot holds the conversation as it is now; exchanges added
        later are not shared. While a link is live, sharing again returns the
        same link (and the same snapshot); after ``unshare`` a new link with a
        new token and a fresh snapshot is made.

        Args:
            user_id: The caller.
            session_id: The session.

        Returns:
            The link; its ``token`` (256 random bits, URL-safe) is the only
            key to the shared view.

        Raises:
            NotFound: No such session, or it belongs to someone else.
            InvalidRequest: A malformed id.
        """
        record = await self._owned(user_id, session_id)
        share = await self._storage.create_share(
            ShareRecord(
                token=secrets.token_urlsafe(_TOKEN_BYTES),
                session_id=record.id,
                user_id=record.user_id,
                package_id=record.package_id,
                package_version=record.package_version,
                no_prompt=record.no_prompt,
                created_at=read_clock(self._clock),
                exchanges=tuple(
                    SharedExchange(index=e.index, input=e.input, response=e.response, model=e.model)
                    for e in record.exchanges
                ),
            )
        )
        return ShareLink(
            token=share.token, session_id=share.session_id, created_at=share.created_at
        )

    async def unshare(self, user_id: str, session_id: str) -> None:
        """Revoke the session's live share link, if it has one.

        The token stops working at once and is never valid again. Unsharing a
        session that is not shared does nothing.

        Args:
            user_id: The caller.
            session_id: The session.

        Raises:
            NotFound: No such session, or it belongs to someone else.
            InvalidRequest: A malformed id.
        """
        record = await self._owned(user_id, session_id)
        if await self._storage.revoke_share(record.id, read_clock(self._clock)):
            logger.info("session %s unshared", record.id)

    async def get_shared(self, token: str) -> SharedSession:
        """Return the public view of a shared session, for anyone holding the token.

        It carries the snapshot taken when the session was shared, the
        package, and nothing identifying the owner or the session.

        Args:
            token: The share link's token.

        Raises:
            NotFound: Unknown or revoked token (or its session was deleted).
            InvalidRequest: The token is not a string.
        """
        share = await self._live_share(token)
        return SharedSession(
            token=share.token,
            package_id=share.package_id,
            package_version=share.package_version,
            no_prompt=share.no_prompt,
            shared_at=share.created_at,
            exchanges=share.exchanges,
        )

    async def fork(self, user_id: str, token: str) -> Session:
        """Copy a shared snapshot into a new session owned by the caller.

        The new session continues like any other (the caller's runs append to
        it). Its copied exchanges cost nothing, have no run id and no usage.

        Args:
            user_id: The caller, owner of the new session.
            token: The share link's token.

        Returns:
            The new session.

        Raises:
            NotFound: Unknown or revoked token.
            InvalidRequest: A malformed user id or token.
        """
        check_text_id(user_id, "user_id")
        share = await self._live_share(token)
        now = read_clock(self._clock)
        record = SessionRecord(
            id=new_id("ses"),
            user_id=user_id,
            package_id=share.package_id,
            package_version=share.package_version,
            no_prompt=share.no_prompt,
            created_at=now,
            updated_at=now,
            title=_title(share.exchanges[0].input) if share.exchanges else "",
            exchange_count=len(share.exchanges),
            exchanges=tuple(
                ExchangeRecord(
                    index=position,
                    input=e.input,
                    response=e.response,
                    model=e.model,
                    usage=Usage(),
                    credits_spent=0,
                    run_id=None,
                    created_at=now,
                )
                for position, e in enumerate(share.exchanges)
            ),
        )
        await self._storage.create_session(record)
        logger.info("session %s forked from a share", record.id)
        return _session(record)

    async def feedback(
        self,
        user_id: str,
        session_id: str,
        exchange_index: int,
        *,
        helpful: bool,
        comment: str | None = None,
    ) -> Feedback:
        """Record whether one response of the user's session helped. One vote per exchange.

        Args:
            user_id: The caller.
            session_id: The session.
            exchange_index: The exchange's ``index`` (from 0).
            helpful: The vote.
            comment: Optional text, at most 1,000 characters.

        Raises:
            NotFound: No such session (or not the caller's), or no such exchange.
            Conflict: The exchange already has feedback.
            InvalidRequest: Malformed arguments or a comment that is too long.
        """
        check_int(exchange_index, "exchange_index", minimum=0)
        if not isinstance(helpful, bool):
            raise InvalidRequest(f"helpful must be a bool, got {type(helpful).__name__}")
        comment = _check_comment(comment)
        record = await self._owned(user_id, session_id)
        if not any(e.index == exchange_index for e in record.exchanges):
            raise NotFound(f"exchange {exchange_index} of session {session_id!r} not found")
        vote = FeedbackRecord(
            session_id=record.id,
            exchange_index=exchange_index,
            user_id=user_id,
            helpful=helpful,
            comment=comment,
            created_at=read_clock(self._clock),
        )
        await self._storage.add_feedback(vote)
        return Feedback(
            session_id=vote.session_id,
            exchange_index=vote.exchange_index,
            helpful=vote.helpful,
            comment=vote.comment,
            created_at=vote.created_at,
        )

    async def list(
        self, user_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> SessionPage:
        """Return the user's sessions, most recently updated first, without conversations.

        Args:
            user_id: The caller.
            limit: Page size, 1 to 100.
            cursor: ``next_cursor`` of the previous page (opaque).

        Raises:
            InvalidRequest: A malformed user id, limit or cursor.
        """
        check_text_id(user_id, "user_id")
        check_int(limit, "limit", minimum=1, maximum=MAX_LIST_LIMIT)
        before = None if cursor is None else _decode_cursor(cursor)
        records = await self._storage.list_sessions(user_id, limit=limit + 1, before=before)
        page = records[:limit]
        last = page[-1] if page and len(records) > limit else None
        return SessionPage(
            sessions=tuple(_summary(r) for r in page),
            next_cursor=None if last is None else _encode_cursor(last.updated_at, last.id),
        )

    # -- helpers ------------------------------------------------------------------

    async def _owned(self, user_id: str, session_id: str) -> SessionRecord:
        """The session with its exchanges, if ``user_id`` owns it; else ``NotFound``."""
        check_text_id(user_id, "user_id")
        check_text_id(session_id, "session_id")
        record = await self._storage.get_session(session_id)
        if record is None or record.user_id != user_id:
            raise _not_found(session_id)
        return record

    async def _live_share(self, token: str) -> ShareRecord:
        if not isinstance(token, str):
            raise InvalidRequest(f"token must be a string, got {type(token).__name__}")
        # Anything that cannot be a token is simply not found: no query needed.
        share = await self._storage.get_share(token) if _TOKEN.fullmatch(token) else None
        if share is None:
            raise NotFound("shared session not found")
        return share


def _title(input: str) -> str:
    """A session's title from its first input (internal; the runner uses it too).

    The first line with any text, whitespace collapsed, cut to 80 characters
    with a trailing "…" when longer.
    """
    line = next((" ".join(line.split()) for line in input.splitlines() if line.strip()), "")
    if len(line) <= MAX_TITLE_LENGTH:
        return line
    return line[: MAX_TITLE_LENGTH - 1].rstrip() + "…"


def _not_found(session_id: str) -> NotFound:
    # One message for missing and foreign sessions alike.
    return NotFound(f"session {session_id!r} not found")


def _check_comment(comment: object) -> str | None:
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise InvalidRequest("comment must be a string or None")
    if len(comment) > MAX_COMMENT_LENGTH:
        raise InvalidRequest(f"comment must be at most {MAX_COMMENT_LENGTH} characters")
    return check_storable(comment, "comment")


def _encode_cursor(updated_at: datetime, session_id: str) -> str:
    raw = json.dumps([updated_at.isoformat(), session_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: object) -> tuple[datetime, str]:
    if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CURSOR_LENGTH:
        raise InvalidRequest("invalid cursor")
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        value = json.loads(raw)
        if not (
            isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)
        ):
            raise ValueError("not a cursor")
        stamp, session_id = value
        updated_at = datetime.fromisoformat(stamp)
        if updated_at.tzinfo is None or updated_at.utcoffset() is None:
            raise ValueError("naive timestamp")
        # In UTC, as stored; an offset can push a valid date past year 1 or 9999.
        updated_at = updated_at.astimezone(UTC)
        check_text_id(session_id, "cursor")
    except (ValueError, TypeError, OverflowError, binascii.Error, InvalidRequest) as exc:
        raise InvalidRequest("invalid cursor") from exc
    return updated_at, session_id


def _session(record: SessionRecord) -> Session:
    # The records carry every field of the public models under the same names.
    return Session.model_validate(record, from_attributes=True)


def _summary(record: SessionRecord) -> SessionSummary:
    return SessionSummary.model_validate(record, from_attributes=True)
