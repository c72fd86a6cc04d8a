"""Property test: any interleaving of concurrent runs, retries and deletes on one
session ends with every charge accounted for, on SQLite and PostgreSQL.

Operations come in waves: those of one wave run at once, waves one after
another. Whatever the order, each run id is charged at most once; if the
session survives, the charges are exactly its saved exchanges; if it was
deleted, it stays deleted and the charges are the runs that settled."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prpm_playground.errors import NotFound, PlaygroundError, RunInProgress

from .test_runner import make, request

__all__ = ["make"]  # the runner tests' fixture, used here too

operation = st.one_of(
    st.tuples(st.just("run"), st.integers(0, 5)),
    st.tuples(st.just("retry"), st.integers(0, 5)),
    st.tuples(st.just("delete"), st.just(0)),
)
waves = st.lists(st.lists(operation, min_size=1, max_size=6), min_size=1, max_size=4)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=waves)
async def test_runs_retries_and_deletes_on_one_session_account_for_every_charge(
    make: Any, plan: list[list[tuple[str, int]]]
) -> None:
    h = make()
    user = f"prop-{secrets.token_hex(6)}"
    await h.funded(user, 10_000)
    first = await h.runner.run(user, request(run_id="first"))
    session_id = first.session_id
    deleted = False

    async def perform(kind: str, n: int) -> None:
        nonlocal deleted
        if kind == "delete":
            deleted = await h.storage.delete_session(session_id) or deleted
            return
        try:
            await h.runner.run(user, request(session_id=session_id, run_id=f"run-{n}"))
        except (NotFound, RunInProgress):
            pass  # the session is gone, or the same run id is still going
        except PlaygroundError as exc:  # anything else is a defect
            raise AssertionError(f"{kind} {n}: {exc.to_dict()}") from exc

    for wave in plan:
        await asyncio.gather(*(perform(kind, n) for kind, n in wave))

    audit = await h.storage.audit(user)
    assert audit is not None
    holds = {h.idempotency_key: h for h in audit[1]}
    assert all(hold.status != "active" for hold in holds.values())
    captured = {key.removeprefix("run:"): hold.captured for key, hold in holds.items() if key}
    charged = -sum(await h.spends(user))
    assert charged == sum(captured.values())  # one charge per run id, never two
    session = await h.storage.get_session(session_id)
    if deleted:
        assert session is None  # stays deleted, whatever finished after the delete
    else:
        assert session is not None
        saved = {e.run_id: e.credits_spent for e in session.exchanges}
        assert saved == {run: amount for run, amount in captured.items() if amount}
        assert [e.index for e in session.exchanges] == list(range(len(session.exchanges)))
    await h.ledger.verify(user)
