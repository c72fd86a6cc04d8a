"""Sessions: listing, ownership, deletion, sharing, forking, feedback, and the
storage rules under them (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from prpm_playground import InvalidRequest, NotFound, SQLAlchemyStorage
from prpm_playground._ids import new_id
from prpm_playground.errors import Conflict
from prpm_playground.models import SessionSummary, Usage
from prpm_playground.sessions import SessionService, _title
from prpm_playground.storage.base import ExchangeRecord, SessionRecord
from prpm_playground.testing import ManualClock

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
USAGE = Usage(
    input_tokens=120, output_tokens=340, cache_creation_input_tokens=7, cache_read_input_tokens=9
)


@pytest.fixture
def sessions(storage: SQLAlchemyStorage, clock: ManualClock) -> SessionService:
    return SessionService(storage, clock=clock)


@pytest.fixture
def other() -> str:
    return f"other-{secrets.token_hex(8)}"


def record(
    session_id: str, user_id: str, *, at: datetime = T0, count: int = 0, title: str = "t"
) -> SessionRecord:
    return SessionRecord(
        id=session_id,
        user_id=user_id,
        package_id="acme/code-review",
        package_version="1.2.0",
        no_prompt=False,
        created_at=T0,
        updated_at=at,
        title=title,
        exchange_count=count,
    )


def exchange(index: int, *, at: datetime = T0, run_id: str | None = None) -> ExchangeRecord:
    return ExchangeRecord(
        index=index,
        input=f"question {index}",
        response=f"answer {index}",
        model="claude-sonnet-4-5",
        usage=USAGE,
        credits_spent=3 + index,
        run_id=run_id if run_id is not None else f"run-{secrets.token_hex(6)}",
        created_at=at,
        duration_ms=1500,
        stop_reason="end_turn",
    )


async def seed(
    storage: SQLAlchemyStorage, user_id: str, *, exchanges: int = 1, at: datetime = T0
) -> str:
    """A session of ``exchanges`` exchanges, one second apart, the last at ``at``."""
    session_id = new_id("ses")
    start = at - timedelta(seconds=exchanges - 1)
    for i in range(exchanges):
        when = start + timedelta(seconds=i)
        await storage.save_exchange(
            record(session_id, user_id, at=when, count=i, title=_title("question 0")),
            exchange(i, at=when),
        )
    return session_id


async def count_rows(storage: SQLAlchemyStorage, session_id: str) -> dict[str, int]:
    t = storage.tables
    counts = {}
    async with storage.engine.connect() as conn:
        for table in (t.sessions, t.exchanges, t.shares, t.feedback):
            column = table.c.id if table is t.sessions else table.c.session_id
            query = select(func.count()).select_from(table).where(column == session_id)
            counts[table.name.removeprefix("prpm_")] = (await conn.execute(query)).scalar_one()
    return counts


# -- saving and reading -------------------------------------------------------------


async def test_saved_exchanges_read_back(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str
) -> None:
    session_id = await seed(storage, user, exchanges=3)
    session = await sessions.get(user, session_id)
    assert session.id == session_id
    assert (session.package_id, session.package_version, session.no_prompt) == (
        "acme/code-review",
        "1.2.0",
        False,
    )
    assert [e.index for e in session.exchanges] == [0, 1, 2]
    assert [e.input for e in session.exchanges] == ["question 0", "question 1", "question 2"]
    assert [e.credits_spent for e in session.exchanges] == [3, 4, 5]
    assert all(e.usage == USAGE for e in session.exchanges)
    assert session.exchanges[0].run_id is not None
    assert (session.created_at, session.updated_at) == (T0, T0)
    assert session.exchanges[2].created_at == T0
    stored = await storage.get_session(session_id)
    assert stored is not None
    assert stored.exchange_count == 3
    assert (stored.exchanges[0].duration_ms, stored.exchanges[0].stop_reason) == (1500, "end_turn")
    assert stored.title == "question 0"


async def test_exchange_by_run(storage: SQLAlchemyStorage, user: str) -> None:
    session_id = new_id("ses")
    await storage.save_exchange(record(session_id, user), exchange(0, run_id="r-1"))
    found = await storage.exchange_by_run(user, "r-1")
    assert found is not None
    session, saved = found
    assert (session.id, session.user_id, session.exchanges) == (session_id, user, ())
    assert (saved.index, saved.run_id, saved.usage) == (0, "r-1", USAGE)
    assert await storage.exchange_by_run(user, "r-2") is None
    assert await storage.exchange_by_run("someone-else", "r-1") is None


# -- listing ------------------------------------------------------------------------


async def test_list_pages_newest_first(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str, other: str
) -> None:
    # Seven sessions; two share an updated_at across a page boundary: the id breaks the tie.
    times = [T0 + timedelta(minutes=m) for m in (5, 1, 7, 5, 3, 9, 2)]
    ids = [await seed(storage, user, at=at) for at in times]
    await seed(storage, other, at=T0 + timedelta(hours=1))  # never listed for user
    expected = [i for _, i in sorted(zip(times, ids, strict=True), reverse=True)]

    seen: list[SessionSummary] = []
    cursor, pages = None, 0
    while True:
        page = await sessions.list(user, limit=3, cursor=cursor)
        pages += 1
        seen.extend(page.sessions)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert [s.id for s in seen] == expected
    assert [s.updated_at for s in seen] == sorted(times, reverse=True)
    assert all(s.exchange_count == 1 and s.title == "question 0" for s in seen)

    # A new exchange moves a session to the top.
    oldest = expected[-1]
    later = T0 + timedelta(hours=2)
    await storage.save_exchange(record(oldest, user, at=later, count=1), exchange(1, at=later))
    top = (await sessions.list(user, limit=1)).sessions[0]
    assert (top.id, top.exchange_count, top.updated_at) == (oldest, 2, later)


async def test_list_exact_page_has_no_cursor(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str
) -> None:
    assert await sessions.list(user) == (await sessions.list(user, limit=100))
    assert (await sessions.list(user)).sessions == ()
    for i in range(3):
        await seed(storage, user, at=T0 + timedelta(seconds=i))
    page = await sessions.list(user, limit=3)
    assert len(page.sessions) == 3
    assert page.next_cursor is None


async def test_list_default_limit_is_20(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str
) -> None:
    for i in range(21):
        await seed(storage, user, at=T0 + timedelta(seconds=i))
    page = await sessions.list(user)
    assert len(page.sessions) == 20
    assert page.next_cursor is not None
    assert len((await sessions.list(user, cursor=page.next_cursor)).sessions) == 1


@pytest.mark.parametrize("limit", [0, 101, -1, True, "5", 2.0])
async def test_list_limit_bounds(sessions: SessionService, user: str, limit: object) -> None:
    with pytest.raises(InvalidRequest):
        await sessions.list(user, limit=limit)  # type: ignore[arg-type]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage!",
        "x" * 600,
        "a",
        _b64("not json"),
        _b64('{"u": "2026-01-01T00:00:00+00:00", "i": "ses_x"}'),
        _b64('["2026-01-01T00:00:00", "ses_x"]'),  # naive
        _b64('["yesterday", "ses_x"]'),
        _b64('["2026-01-01T00:00:00+00:00", ""]'),
        _b64('["2026-01-01T00:00:00+00:00", "ses_x", 3]'),
        _b64('["2026-01-01T00:00:00+00:00", 7]'),
        _b64("ab"),
        5,
    ],
)
async def test_list_bad_cursor(sessions: SessionService, user: str, cursor: object) -> None:
    with pytest.raises(InvalidRequest):
        await sessions.list(user, cursor=cursor)  # type: ignore[arg-type]


async def test_cursor_is_opaque_url_safe(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str
) -> None:
    for i in range(2):
        await seed(storage, user, at=T0 + timedelta(seconds=i))
    cursor = (await sessions.list(user, limit=1)).next_cursor
    assert cursor is not None
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)


# -- ownership and deletion -----------------------------------------------------------


async def test_only_the_owner_sees_or_changes_a_session(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str, other: str
) -> None:
    session_id = await seed(storage, user)
    missing = new_id("ses")

    async def vote(u: str, s: str) -> object:
        return await sessions.feedback(u, s, 0, helpful=True)

    calls: dict[str, Callable[[str, str], Awaitable[object]]] = {
        "get": sessions.get,
        "delete": sessions.delete,
        "share": sessions.share,
        "unshare": sessions.unshare,
        "feedback": vote,
    }
    for name, call in calls.items():
        with pytest.raises(NotFound) as foreign:
            await call(other, session_id)
        with pytest.raises(NotFound) as absent:
            await call(user, missing)
        # Same answer as for a session that does not exist: nothing revealed.
        assert foreign.value.message == f"session {session_id!r} not found", name
        assert absent.value.message == f"session {missing!r} not found", name

    # Nothing the other user tried had any effect.
    assert len((await sessions.get(user, session_id)).exchanges) == 1
    assert await storage.live_share(session_id) is None
    assert (await count_rows(storage, session_id))["feedback"] == 0
    assert (await sessions.list(other)).sessions == ()


@pytest.mark.parametrize("bad", ["", "x" * 256, "a\x00b", None, 5])
async def test_malformed_ids_refused(sessions: SessionService, user: str, bad: object) -> None:
    with pytest.raises(InvalidRequest):
        await sessions.get(user, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        await sessions.get(bad, "ses_x")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        await sessions.list(bad)  # type: ignore[arg-type]


async def test_delete_removes_everything(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str
) -> None:
    session_id = await seed(storage, user, exchanges=2)
    kept = await seed(storage, user, exchanges=1)
    await sessions.feedback(user, session_id, 1, helpful=False, comment="meh")
    link = await sessions.share(user, session_id)
    await sessions.unshare(user, session_id)
    link = await sessions.share(user, session_id)  # one revoked and one live share
    run_id = (await sessions.get(user, session_id)).exchanges[0].run_id
    assert run_id is not None
    assert await count_rows(storage, session_id) == {
        "sessions": 1,
        "exchanges": 2,
        "shares": 2,
        "feedback": 1,
    }

    await sessions.delete(user, session_id)

    # The foreign keys cascade: nothing of the session is left.
    assert await count_rows(storage, session_id) == {
        "sessions": 0,
        "exchanges": 0,
        "shares": 0,
        "feedback": 0,
    }
    for call in (sessions.get, sessions.delete, sessions.share, sessions.unshare):
        with pytest.raises(NotFound):
            await call(user, session_id)
    with pytest.raises(NotFound):
        await sessions.get_shared(link.token)
    assert await storage.get_session(session_id) is None
    assert await storage.exchange_by_run(user, run_id) is None
    assert await storage.delete_session(session_id) is False
    assert [s.id for s in (await sessions.list(user)).sessions] == [kept]
    # The run id is free again once its exchange is gone.
    await storage.save_exchange(record(new_id("ses"), user), exchange(0, run_id=run_id))


# -- sharing ------------------------------------------------------------------------


async def test_share_token_and_reshare(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str, clock: ManualClock
) -> None:
    session_id = await seed(storage, user)
    link = await sessions.share(user, session_id)
    assert len(link.token) >= 43  # 256 bits of base64url; at least 128 required
    assert re.fullmatch(r"[A-Za-z0-9_-]+", link.token)
    assert (link.session_id, link.created_at) == (session_id, clock.now)

    clock.advance(timedelta(minutes=5))
    again = await sessions.share(user, session_id)
    assert again == link  # same token, same moment: the same snapshot

    tokens = {(await sessions.share(user, await seed(storage, user))).token for _ in range(20)}
    assert len(tokens) == 20


async def test_concurrent_shares_agree_on_one_link(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str
) -> None:
    session_id = await seed(storage, user)
    links = await asyncio.gather(*(sessions.share(user, session_id) for _ in range(6)))
    assert len({link.token for link in links}) == 1
    assert (await count_rows(storage, session_id))["shares"] == 1


async def test_snapshot_is_frozen(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str, clock: ManualClock
) -> None:
    session_id = await seed(storage, user, exchanges=2)
    link = await sessions.share(user, session_id)
    before = await sessions.get_shared(link.token)
    assert [(e.index, e.input, e.response) for e in before.exchanges] == [
        (0, "question 0", "answer 0"),
        (1, "question 1", "answer 1"),
    ]
    assert before.shared_at == link.created_at
    assert before.exchanges[0].model == "claude-sonnet-4-5"

    later = T0 + timedelta(minutes=1)
    await storage.save_exchange(record(session_id, user, at=later, count=2), exchange(2, at=later))
    clock.advance(timedelta(minutes=2))

    assert await sessions.get_shared(link.token) == before
    assert len((await sessions.get(user, session_id)).exchanges) == 3
    # Sharing again while live: the same link, and still the original snapshot.
    assert (await sessions.share(user, session_id)).token == link.token
    assert await sessions.get_shared(link.token) == before


async def test_unshare_revokes_and_a_new_share_gets_a_new_token(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str, other: str
) -> None:
    session_id = await seed(storage, user)
    first = await sessions.share(user, session_id)
    await sessions.unshare(user, session_id)
    await sessions.unshare(user, session_id)  # nothing left to revoke: no error
    with pytest.raises(NotFound):
        await sessions.get_shared(first.token)
    with pytest.raises(NotFound):
        await sessions.fork(other, first.token)
    assert await storage.live_share(session_id) is None

    later = T0 + timedelta(minutes=1)
    await storage.save_exchange(record(session_id, user, at=later, count=1), exchange(1, at=later))
    second = await sessions.share(user, session_id)
    assert second.token != first.token
    assert len((await sessions.get_shared(second.token)).exchanges) == 2  # a fresh snapshot
    with pytest.raises(NotFound):
        await sessions.get_shared(first.token)  # revoked for good


@pytest.mark.parametrize("token", ["", "nope", "../../etc/passwd", "a" * 65, "x" * 43])
async def test_unknown_tokens_are_not_found(sessions: SessionService, token: str) -> None:
    with pytest.raises(NotFound):
        await sessions.get_shared(token)
    with pytest.raises(NotFound):
        await sessions.fork("someone", token)


async def test_non_string_token_is_invalid(sessions: SessionService) -> None:
    with pytest.raises(InvalidRequest):
        await sessions.get_shared(None)  # type: ignore[arg-type]


async def test_shared_view_has_no_owner_identity(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str
) -> None:
    session_id = await seed(storage, user, exchanges=2)
    run_ids = [e.run_id for e in (await sessions.get(user, session_id)).exchanges]
    token = (await sessions.share(user, session_id)).token
    shared = await sessions.get_shared(token)
    dumped = shared.model_dump(mode="json")
    assert set(dumped) == {
        "token",
        "package_id",
        "package_version",
        "no_prompt",
        "shared_at",
        "exchanges",
    }
    assert all(set(e) == {"index", "input", "response", "model"} for e in dumped["exchanges"])
    text = json.dumps(dumped)
    for secret in (user, session_id, *run_ids):
        assert secret is not None
        assert secret not in text
    assert (shared.package_id, shared.package_version, shared.no_prompt) == (
        "acme/code-review",
        "1.2.0",
        False,
    )


# -- forking ------------------------------------------------------------------------


async def test_fork_copies_the_snapshot_into_the_callers_session(
    storage: SQLAlchemyStorage,
    sessions: SessionService,
    user: str,
    other: str,
    clock: ManualClock,
) -> None:
    original = await seed(storage, user, exchanges=2)
    token = (await sessions.share(user, original)).token
    # Added after sharing: not part of the snapshot, so not forked.
    await storage.save_exchange(record(original, user, count=2), exchange(2))
    clock.advance(timedelta(hours=1))

    fork = await sessions.fork(other, token)
    assert fork.id != original
    assert fork.id.startswith("ses_")
    assert (fork.package_id, fork.package_version, fork.no_prompt) == (
        "acme/code-review",
        "1.2.0",
        False,
    )
    assert (fork.created_at, fork.updated_at) == (clock.now, clock.now)
    assert [(e.index, e.input, e.response, e.model) for e in fork.exchanges] == [
        (0, "question 0", "answer 0", "claude-sonnet-4-5"),
        (1, "question 1", "answer 1", "claude-sonnet-4-5"),
    ]
    assert all(e.run_id is None and e.credits_spent == 0 for e in fork.exchanges)
    assert all(e.usage == Usage() for e in fork.exchanges)

    # Owned by the caller, listed for them, invisible to the sharer.
    assert await sessions.get(other, fork.id) == fork
    summary = (await sessions.list(other)).sessions
    assert [(s.id, s.title, s.exchange_count) for s in summary] == [(fork.id, "question 0", 2)]
    with pytest.raises(NotFound):
        await sessions.get(user, fork.id)

    # Independent: the fork grows alone, and outlives the original.
    await storage.save_exchange(
        record(fork.id, other, at=clock.now, count=2), exchange(2, at=clock.now)
    )
    assert len((await sessions.get(other, fork.id)).exchanges) == 3
    assert len((await sessions.get(user, original)).exchanges) == 3
    assert len((await sessions.get_shared(token)).exchanges) == 2
    await sessions.delete(user, original)
    assert len((await sessions.get(other, fork.id)).exchanges) == 3

    # A second fork is another new session; the owner may fork their own share too.
    second = await seed(storage, user)
    own = await sessions.fork(user, (await sessions.share(user, second)).token)
    assert own.id != second
    assert len({fork.id, own.id, second}) == 3


# -- feedback -------------------------------------------------------------------------


async def test_feedback_once_per_exchange(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str, clock: ManualClock
) -> None:
    session_id = await seed(storage, user, exchanges=2)
    vote = await sessions.feedback(user, session_id, 0, helpful=True, comment="spot on")
    assert (vote.session_id, vote.exchange_index, vote.helpful, vote.comment) == (
        session_id,
        0,
        True,
        "spot on",
    )
    assert vote.created_at == clock.now
    with pytest.raises(Conflict):
        await sessions.feedback(user, session_id, 0, helpful=False)
    plain = await sessions.feedback(user, session_id, 1, helpful=False)
    assert plain.comment is None
    with pytest.raises(Conflict):
        await sessions.feedback(user, session_id, 1, helpful=False)
    assert (await count_rows(storage, session_id))["feedback"] == 2


async def test_concurrent_votes_one_wins(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str
) -> None:
    session_id = await seed(storage, user)
    results = await asyncio.gather(
        *(sessions.feedback(user, session_id, 0, helpful=i % 2 == 0) for i in range(4)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Conflict) for r in results) == 3
    assert sum(not isinstance(r, BaseException) for r in results) == 1


async def test_feedback_validation(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str
) -> None:
    session_id = await seed(storage, user, exchanges=1)
    with pytest.raises(InvalidRequest):
        await sessions.feedback(user, session_id, 0, helpful=True, comment="x" * 1001)
    with pytest.raises(InvalidRequest):
        await sessions.feedback(user, session_id, 0, helpful=True, comment="a\x00b")
    with pytest.raises(InvalidRequest, match="surrogates"):
        await sessions.feedback(user, session_id, 0, helpful=True, comment="a\udc00b")
    with pytest.raises(InvalidRequest, match="surrogates"):
        await sessions.get(user, "ses_\ud800")
    with pytest.raises(InvalidRequest):
        await sessions.feedback(user, session_id, -1, helpful=True)
    with pytest.raises(InvalidRequest):
        await sessions.feedback(user, session_id, True, helpful=True)
    with pytest.raises(InvalidRequest):
        await sessions.feedback(user, session_id, 0, helpful="yes")  # type: ignore[arg-type]
    with pytest.raises(NotFound) as missing:
        await sessions.feedback(user, session_id, 1, helpful=True)
    assert "exchange 1" in missing.value.message
    assert (await count_rows(storage, session_id))["feedback"] == 0
    longest = await sessions.feedback(user, session_id, 0, helpful=True, comment="é" * 1000)
    assert longest.comment == "é" * 1000


# -- the storage's own rules ------------------------------------------------------------


async def test_concurrent_appends_to_one_session_all_land_in_order(
    storage: SQLAlchemyStorage, user: str
) -> None:
    # Six runs continuing one session at once, each from the same view of it
    # (count 1): none conflicts, each gets the next index.
    session_id = await seed(storage, user)
    at = T0 + timedelta(minutes=1)
    results = await asyncio.gather(
        *(
            storage.save_exchange(record(session_id, user, at=at, count=1), exchange(1, at=at))
            for _ in range(6)
        )
    )
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    stored = await storage.get_session(session_id)
    assert stored is not None
    assert stored.exchange_count == 7
    assert [e.index for e in stored.exchanges] == list(range(7))
    assert len({e.run_id for e in stored.exchanges}) == 7


async def test_concurrent_starts_of_one_new_session_all_land(
    storage: SQLAlchemyStorage, user: str
) -> None:
    session_id = new_id("ses")
    results = await asyncio.gather(
        *(storage.save_exchange(record(session_id, user), exchange(0)) for _ in range(3))
    )
    assert sorted(results) == [0, 1, 2]
    stored = await storage.get_session(session_id)
    assert stored is not None
    assert (stored.exchange_count, len(stored.exchanges)) == (3, 3)


async def test_a_deleted_session_is_not_brought_back_by_an_append(
    storage: SQLAlchemyStorage, user: str
) -> None:
    session_id = await seed(storage, user)
    assert await storage.delete_session(session_id)
    with pytest.raises(NotFound):
        await storage.save_exchange(record(session_id, user, count=1), exchange(1))
    assert await storage.get_session(session_id) is None


async def test_run_id_unique_per_user(storage: SQLAlchemyStorage, user: str, other: str) -> None:
    first = new_id("ses")
    await storage.save_exchange(record(first, user), exchange(0, run_id="run-1"))
    # The same run id again for the same user, in a new session: refused, nothing written.
    second = new_id("ses")
    with pytest.raises(Conflict):
        await storage.save_exchange(record(second, user), exchange(0, run_id="run-1"))
    assert await storage.get_session(second) is None
    # ... or in the same session: refused, count unchanged.
    with pytest.raises(Conflict):
        await storage.save_exchange(record(first, user, count=1), exchange(1, run_id="run-1"))
    stored = await storage.get_session(first)
    assert stored is not None
    assert (stored.exchange_count, len(stored.exchanges)) == (1, 1)
    # Another user may use the same run id.
    theirs = new_id("ses")
    await storage.save_exchange(record(theirs, other), exchange(0, run_id="run-1"))
    found = await storage.exchange_by_run(other, "run-1")
    assert found is not None
    assert found[0].id == theirs


async def test_nobody_appends_to_someone_elses_session(
    storage: SQLAlchemyStorage, user: str, other: str
) -> None:
    session_id = await seed(storage, user)
    with pytest.raises(NotFound):  # continued: not found for anyone but the owner
        await storage.save_exchange(record(session_id, other, count=1), exchange(1))
    with pytest.raises(Conflict):  # started anew with a taken id
        await storage.save_exchange(record(session_id, other), exchange(0))
    stored = await storage.get_session(session_id)
    assert stored is not None
    assert (stored.user_id, stored.exchange_count, len(stored.exchanges)) == (user, 1, 1)


async def test_forked_exchanges_may_share_null_run_ids(
    storage: SQLAlchemyStorage, sessions: SessionService, user: str
) -> None:
    token = (await sessions.share(user, await seed(storage, user, exchanges=3))).token
    forks = [await sessions.fork(user, token) for _ in range(2)]
    assert all(e.run_id is None for f in forks for e in f.exchanges)


# -- titles -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("Review this function", "Review this function"),
        ("  first   line\twith  gaps  \nsecond line", "first line with gaps"),
        ("\n\n   \nafter blank lines\nmore", "after blank lines"),
        ("", ""),
        ("   \n  ", ""),
        ("x" * 80, "x" * 80),
        ("x" * 81, "x" * 79 + "…"),
        ("word " * 40, ("word " * 16).strip() + "…"),
    ],
)
def test_title(text: str, title: str) -> None:
    assert _title(text) == title
    assert len(_title(text)) <= 80
