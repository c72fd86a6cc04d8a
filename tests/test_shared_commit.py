"""``SQLAlchemyStorage.together``: a run's charge and its exchange in one commit.

On a SQLite file the block's ledger writes and exchange save share one
transaction; on PostgreSQL (and in-memory SQLite) they commit one by one.
Either way a refused save never undoes the charge before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import pytest

from prpm_playground import Conflict, CreditLedger, CreditPolicy, SQLAlchemyStorage
from prpm_playground._ids import new_id
from prpm_playground.storage.sql.ledger_store import SQLLedgerUnit

from .test_sessions import exchange, record


@pytest.fixture
async def sqlite_file(tmp_path: Any) -> AsyncIterator[SQLAlchemyStorage]:
    """A storage of its own on a SQLite file, for the driver's details."""
    storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path / 'joint.db'}")
    await storage.migrate()
    yield storage
    await storage.close()


def joins(storage: SQLAlchemyStorage) -> bool:
    """True where the block really is one transaction (a SQLite file)."""
    return storage.engine.dialect.name == "sqlite"


async def held(ledger: CreditLedger, user: str, amount: int = 10) -> str:
    await ledger.grant(user, 100, kind="purchased", idempotency_key=f"fund-{user}")
    hold = await ledger.hold(user, amount, idempotency_key=f"hold-{user}")
    return hold.id


async def hold_status(storage: SQLAlchemyStorage, user: str) -> list[tuple[int, str]]:
    audit = await storage.audit(user)
    assert audit is not None
    return [(h.captured, h.status) for h in audit[1]]


async def test_a_refused_save_keeps_the_charge_and_a_retry_appends(
    bare: CreditLedger, storage: SQLAlchemyStorage, user: str
) -> None:
    hold_id = await held(bare, user)
    session_id = new_id("ses")
    await storage.save_exchange(record(session_id, user), exchange(0, run_id="taken"))

    async with storage.together():
        await bare.capture(hold_id, 4)
        with pytest.raises(Conflict):  # the run id already saved an exchange
            await storage.save_exchange(record(session_id, user), exchange(0, run_id="taken"))
        # The block's transaction has ended: this one has its own.
        await storage.save_exchange(record(session_id, user, count=1), exchange(1))

    assert await hold_status(storage, user) == [(4, "captured")]
    session = await storage.get_session(session_id)
    assert session is not None
    assert [e.index for e in session.exchanges] == [0, 1]
    await bare.verify(user)


async def test_the_charge_and_the_save_commit_together(
    bare: CreditLedger, storage: SQLAlchemyStorage, user: str
) -> None:
    hold_id = await held(bare, user)
    session_id = new_id("ses")

    async with storage.together():
        await bare.capture(hold_id, 4)
        await storage.save_exchange(record(session_id, user), exchange(0))

    assert await hold_status(storage, user) == [(4, "captured")]
    assert await storage.get_session(session_id) is not None
    await bare.verify(user)


async def test_on_sqlite_the_settlement_is_two_hand_offs(
    sqlite_file: SQLAlchemyStorage, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No trial: the hold leaves its grant live, so settling it reads nothing more.
    storage, bare = sqlite_file, CreditLedger(sqlite_file, CreditPolicy(trial_credits=0))
    hold_id = await held(bare, user)
    await storage.get_session("warm-up")  # the schema check, done once per storage
    calls = 0
    execute = aiosqlite.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    async with storage.together():
        await bare._capture(hold_id, 4, user_id=user)
        await storage.save_exchange(record(new_id("ses"), user), exchange(0))

    # Begin with the account's read; the charge's rows, the exchange and the commit.
    assert calls == 2


async def test_a_block_that_raises_undoes_its_writes_where_it_is_one_transaction(
    bare: CreditLedger, storage: SQLAlchemyStorage, user: str
) -> None:
    hold_id = await held(bare, user)

    async def settle_then_fail() -> None:
        async with storage.together():
            await bare.capture(hold_id, 4)
            raise LookupError("the block fails before its save")

    with pytest.raises(LookupError):
        await settle_then_fail()

    expected = [(0, "active")] if joins(storage) else [(4, "captured")]
    assert await hold_status(storage, user) == expected
    await bare.verify(user)


async def test_a_unit_that_fails_in_the_block_leaves_nothing_and_the_rest_commits(
    bare: CreditLedger, storage: SQLAlchemyStorage, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bare.grant(user, 100, kind="purchased", idempotency_key=f"fund-{user}")
    apply = SQLLedgerUnit.apply
    failures = [RuntimeError("after the unit's writes")]

    async def failing_once(self: SQLLedgerUnit, changes: Any) -> None:
        await apply(self, changes)
        if failures:
            raise failures.pop()

    monkeypatch.setattr(SQLLedgerUnit, "apply", failing_once)
    async with storage.together():
        with pytest.raises(RuntimeError, match="after the unit's writes"):
            await bare.spend(user, 5, idempotency_key="first")
        await bare.spend(user, 3, idempotency_key="second")

    page = await bare.history(user, types=["spend"])
    assert [entry.amount for entry in page.entries] == [-3]
    assert (await bare.balance(user)).available == 97
    await bare.verify(user)


async def test_writes_that_cannot_join_raise_instead_of_waiting(
    sqlite_file: SQLAlchemyStorage, user: str
) -> None:
    storage, bare = sqlite_file, CreditLedger(sqlite_file)
    hold_id = await held(bare, user)

    async with asyncio.timeout(10), storage.together():
        await bare.capture(hold_id, 4)
        with pytest.raises(RuntimeError, match="together"):
            await storage.delete_session("any")

    assert await hold_status(storage, user) == [(4, "captured")]
    assert await storage.delete_session("any") is False  # the lock is free again


async def test_another_task_does_not_join_the_block(
    bare: CreditLedger, storage: SQLAlchemyStorage, user: str
) -> None:
    hold_id = await held(bare, user)
    other = f"{user}-other"
    await bare.grant(other, 50, kind="purchased", idempotency_key=f"fund-{other}")

    async with asyncio.timeout(10):
        async with storage.together():
            await bare.capture(hold_id, 4)
            spend = asyncio.create_task(bare.spend(other, 5, idempotency_key="other"))
            await asyncio.sleep(0.01)
        await spend

    assert (await bare.balance(other)).available == 45
    assert await hold_status(storage, user) == [(4, "captured")]
    await bare.verify(other)


async def test_nested_blocks_and_in_memory_databases_work_as_usual(
    tmp_path: Any, user: str
) -> None:
    for url in ("sqlite+aiosqlite://", f"sqlite+aiosqlite:///{tmp_path / 'nested.db'}"):
        storage = SQLAlchemyStorage(url)
        await storage.migrate()
        ledger = CreditLedger(storage)
        hold_id = await held(ledger, user)
        session_id = new_id("ses")
        async with storage.together(), storage.together():
            await ledger.capture(hold_id, 4)
            await storage.save_exchange(record(session_id, user), exchange(0))
        assert await hold_status(storage, user) == [(4, "captured")]
        assert await storage.get_session(session_id) is not None
        await ledger.verify(user)
        await storage.close()
