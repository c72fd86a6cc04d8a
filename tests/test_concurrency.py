"""Real parallel tasks against real databases: no overdraft, no double effect."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from prpm_playground import CreditLedger, CreditPolicy, InsufficientCredits, SQLAlchemyStorage

from .conftest import Backend


async def test_200_spends_against_100_credits(bare: CreditLedger, user: str) -> None:
    await bare.grant(user, 100, kind="purchased", idempotency_key="fund")
    results = await asyncio.gather(
        *(bare.spend(user, 1, idempotency_key=f"spend-{i}") for i in range(200)),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 100
    assert len(lost) == 100
    assert all(isinstance(r, InsufficientCredits) for r in lost), {type(r) for r in lost}
    assert sorted(e.balance_after for e in won) == list(range(100))
    balance = await bare.balance(user)
    assert (balance.available, balance.held) == (0, 0)
    await bare.verify(user)


async def test_50_replays_of_one_key_have_one_effect(bare: CreditLedger, user: str) -> None:
    await bare.grant(user, 100, kind="purchased", idempotency_key="fund")
    results = await asyncio.gather(
        *(bare.spend(user, 7, idempotency_key="the-run") for _ in range(50))
    )
    assert len({r.id for r in results}) == 1
    assert (await bare.balance(user)).available == 93
    assert len((await bare.history(user, types=["spend"])).entries) == 1
    await bare.verify(user)


async def test_concurrent_grant_replays(bare: CreditLedger, user: str) -> None:
    results = await asyncio.gather(
        *(bare.grant(user, 250, kind="purchased", idempotency_key="pi_9") for _ in range(30))
    )
    assert len({g.id for g in results}) == 1
    assert (await bare.balance(user)).available == 250


async def test_concurrent_first_touch_grants_trial_once(ledger: CreditLedger, user: str) -> None:
    # Many requests of a brand-new user race to open the account.
    results = await asyncio.gather(*(ledger.open_account(user) for _ in range(30)))
    assert {b.available for b in results} == {5}
    assert len((await ledger.history(user, types=["trial"])).entries) == 1
    await ledger.verify(user)


async def test_concurrent_holds_never_overdraw(bare: CreditLedger, user: str) -> None:
    # Credits for exactly one run: exactly one hold succeeds.
    await bare.grant(user, 10, kind="purchased", idempotency_key="fund")
    results = await asyncio.gather(
        *(bare.hold(user, 10, idempotency_key=f"run-{i}") for i in range(10)),
        return_exceptions=True,
    )
    holds = [r for r in results if not isinstance(r, BaseException)]
    assert len(holds) == 1
    assert all(isinstance(r, InsufficientCredits) for r in results if r not in holds)
    await bare.capture(holds[0].id, 4)
    assert (await bare.balance(user)).available == 6


async def test_mixed_concurrent_operations_stay_consistent(bare: CreditLedger, user: str) -> None:
    await bare.grant(user, 500, kind="purchased", idempotency_key="fund")

    async def run(i: int) -> None:
        hold = await bare.hold(user, 5, idempotency_key=f"h{i}")
        await bare.spend(user, 1, idempotency_key=f"s{i}")
        if i % 2:
            await bare.capture(hold.id, i % 5)
        else:
            await bare.release(hold.id)

    await asyncio.gather(*(run(i) for i in range(40)))
    charged = sum(i % 5 for i in range(40) if i % 2) + 40
    assert (await bare.balance(user)).available == 500 - charged
    await bare.verify(user)


async def test_many_accounts_in_parallel(bare: CreditLedger, storage: SQLAlchemyStorage) -> None:
    users = [f"parallel-{i}-{id(storage)}" for i in range(20)]
    await asyncio.gather(*(bare.grant(u, 10, idempotency_key="g") for u in users))
    await asyncio.gather(
        *(bare.spend(u, 1, idempotency_key=f"s{j}") for u in users for j in range(5))
    )
    for u in users:
        assert (await bare.balance(u)).available == 5


async def test_two_instances_share_one_account(storage: SQLAlchemyStorage, user: str) -> None:
    # A second storage has its own in-process write lock and (on SQLite) its own
    # engine, like another app process: only the database's locking protects us.
    if storage.engine.dialect.name == "sqlite":
        twin = SQLAlchemyStorage(storage.engine.url.render_as_string(hide_password=False))
    else:
        twin = SQLAlchemyStorage(storage.engine)
    await twin.migrate()
    first = CreditLedger(storage, policy=None)
    second = CreditLedger(twin)
    await first.grant(user, 45, kind="purchased", idempotency_key="fund")  # + 5 trial
    results = await asyncio.gather(
        *((first if i % 2 else second).spend(user, 1, idempotency_key=f"s{i}") for i in range(80)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 50
    assert all(isinstance(r, InsufficientCredits) for r in results if isinstance(r, BaseException))
    assert (await second.balance(user)).available == 0
    await first.verify(user)
    await twin.close()


async def test_host_engine_with_stricter_isolation(backend: Backend, user: str) -> None:
    # A host engine defaulting to SERIALIZABLE must not turn contention into errors.
    engine = await backend.make_engine()
    strict = engine.execution_options(isolation_level="SERIALIZABLE")
    storage = SQLAlchemyStorage(strict)
    await storage.migrate()
    ledger = CreditLedger(storage, policy=CreditPolicy(trial_credits=0))
    await ledger.grant(user, 30, idempotency_key="fund")
    results = await asyncio.gather(
        *(ledger.spend(user, 1, idempotency_key=f"s{i}") for i in range(40)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 30
    assert all(isinstance(r, InsufficientCredits) for r in results if isinstance(r, BaseException))
    await ledger.verify(user)
    await storage.close()


async def test_cancelled_writer_leaves_no_lock_behind(
    storage: SQLAlchemyStorage, bare: CreditLedger, user: str
) -> None:
    # A request cancelled while it waits for the account's lock (a client
    # that disconnects) must not leave a transaction or lock in the pool.
    await bare.grant(user, 10, idempotency_key="fund")
    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold_the_lock() -> None:
        async with storage.account(user, write=True):
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_lock())
    await holding.wait()
    waiter = asyncio.create_task(bare.spend(user, 1, idempotency_key="cancelled"))
    await asyncio.sleep(0.2)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    # Every pooled connection is usable and nothing is locked or half-written.
    results = await asyncio.wait_for(
        asyncio.gather(*(bare.spend(user, 1, idempotency_key=f"after-{i}") for i in range(9))),
        timeout=20,
    )
    assert [e.balance_after for e in results][-1] >= 0
    balance = await bare.balance(user)
    assert balance.available == 1
    assert (await bare.history(user, types=["spend"])).entries[-1].description is None
    await bare.verify(user)


async def test_connection_left_in_transaction_is_discarded(
    backend: Backend, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # If a unit's rollback never happens (a connection broken mid-cancel), the
    # connection must not return to the pool inside a transaction, holding
    # the account's lock. A one-connection pool makes the next unit reuse it.
    if backend.name != "postgres":
        pytest.skip("asyncpg's transaction; SQLite's case is the test below")
    import asyncpg.transaction

    engine = await backend.make_engine()
    async with engine.connect() as conn:
        schema = (await conn.exec_driver_sql("SHOW search_path")).scalar()
    single = create_async_engine(
        engine.url,
        pool_size=1,
        max_overflow=0,
        connect_args={"server_settings": {"search_path": schema}},
    )
    storage = SQLAlchemyStorage(engine)
    await storage.migrate()
    ledger = CreditLedger(SQLAlchemyStorage(single), policy=CreditPolicy(trial_credits=0))
    await ledger.grant(user, 5, idempotency_key="fund")

    original = asyncpg.transaction.Transaction.__aexit__

    async def no_rollback(self: object, kind: object, error: object, tb: object) -> bool:
        if kind is not None:
            return False  # leave the transaction open, as a failed rollback would
        return await original(self, kind, error, tb)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncpg.transaction.Transaction, "__aexit__", no_rollback)
    with pytest.raises(InsufficientCredits):
        await ledger.spend(user, 6, idempotency_key="too-much")
    monkeypatch.undo()
    entry = await asyncio.wait_for(ledger.spend(user, 2, idempotency_key="next"), timeout=10)
    assert entry.balance_after == 3
    # Committed for everyone else (not merely inside a leftover transaction).
    assert (await CreditLedger(storage).balance(user)).available == 3
    await single.dispose()


async def test_sqlite_connection_left_in_transaction_is_rolled_back(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite units run their transaction on the driver's thread; if their
    # rollback never happened, the transaction must be ended before the next
    # unit on that connection (the one kept for writes, or a pooled one on
    # its return), or that unit would fail to BEGIN (or, worse, write inside
    # the failed one).
    from prpm_playground.storage.sql.lite import LiteTransaction

    ledger = CreditLedger(
        SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path}/left.db"),
        policy=CreditPolicy(trial_credits=0),
    )
    await ledger._storage.migrate()  # type: ignore[attr-defined]
    await ledger.grant("u", 5, idempotency_key="fund")

    async def no_rollback(self: LiteTransaction) -> None:
        return None

    monkeypatch.setattr(LiteTransaction, "rollback", no_rollback)
    with pytest.raises(InsufficientCredits):
        await ledger.spend("u", 6, idempotency_key="too-much")
    monkeypatch.undo()
    entry = await asyncio.wait_for(ledger.spend("u", 2, idempotency_key="next"), timeout=10)
    assert entry.balance_after == 3
    await ledger.verify("u")
    await ledger._storage.close()  # type: ignore[attr-defined]
