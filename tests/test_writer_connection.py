"""The connection a SQLite storage keeps for its writes, across event loops and threads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from prpm_playground import CreditLedger, CreditPolicy, ResetJob, SQLAlchemyStorage


def make(tmp_path: Path) -> tuple[SQLAlchemyStorage, CreditLedger]:
    storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path / 'writer.db'}")
    return storage, CreditLedger(storage, policy=CreditPolicy(trial_credits=0))


def test_one_loop_after_another_takes_the_connection_over(tmp_path: Path) -> None:
    # ResetJob.run_sync and scripts run each call in a fresh loop.
    storage, ledger = make(tmp_path)
    asyncio.run(storage.migrate())
    asyncio.run(ledger.grant("u", 10, idempotency_key="fund"))
    first = storage._tx._held._driver  # type: ignore[union-attr]
    asyncio.run(ledger.spend("u", 3, idempotency_key="one"))
    assert storage._tx._held._driver is first  # type: ignore[union-attr]

    async def finish() -> int:
        available = (await ledger.balance("u")).available
        await ledger.verify("u")
        await storage.close()
        return available

    assert asyncio.run(finish()) == 7


async def test_a_loop_in_another_thread_writes_through_the_pool_meanwhile(tmp_path: Path) -> None:
    storage, ledger = make(tmp_path)
    await storage.migrate()
    await ledger.grant("u", 1000, idempotency_key="fund")
    errors: list[BaseException] = []

    def other_thread() -> None:
        async def spends() -> None:
            for i in range(50):
                await ledger.spend("u", 1, idempotency_key=f"thread-{i}")

        try:
            asyncio.run(spends())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    for i in range(50):
        await ledger.spend("u", 1, idempotency_key=f"main-{i}")
    await asyncio.to_thread(thread.join, 60)

    assert errors == []
    assert (await ledger.balance("u")).available == 900
    await ledger.verify("u")
    await storage.close()


async def test_a_closed_storage_opens_a_new_connection_when_used_again(tmp_path: Path) -> None:
    storage, ledger = make(tmp_path)
    await storage.migrate()
    await ledger.grant("u", 10, idempotency_key="fund")
    await storage.close()
    assert storage._tx._held._driver is None  # type: ignore[union-attr]

    await ledger.spend("u", 4, idempotency_key="after")
    assert (await ledger.balance("u")).available == 6
    await storage.close()


async def test_closing_waits_for_a_write_in_flight(tmp_path: Path) -> None:
    storage, ledger = make(tmp_path)
    await storage.migrate()
    hold = await (await _funded(ledger)).hold("u", 5, idempotency_key="run")
    inside = asyncio.Event()
    release = asyncio.Event()

    async def settling() -> None:
        async with storage.together():
            await ledger.capture(hold.id, 2)
            inside.set()
            await release.wait()

    task = asyncio.create_task(settling())
    await inside.wait()
    closing = asyncio.create_task(storage.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # the write's transaction is still open
    release.set()
    await task
    await closing
    assert (await ledger.balance("u")).available == 8
    await ledger.verify("u")
    await storage.close()


async def test_run_sync_in_another_thread_leaves_this_loops_connection_open(
    tmp_path: Path,
) -> None:
    storage, ledger = make(tmp_path)
    await storage.migrate()
    await _funded(ledger)
    mine = storage._tx._held._driver  # type: ignore[union-attr]
    job = ResetJob(storage, policy=ledger.policy)

    # A scheduler thread's run closes the storage from its own loop at the end.
    await asyncio.to_thread(job.run_sync)

    assert storage._tx._held._driver is mine  # type: ignore[union-attr]
    await ledger.spend("u", 1, idempotency_key="after")
    assert (await ledger.balance("u")).available == 9
    await storage.close()


async def _funded(ledger: CreditLedger) -> CreditLedger:
    await ledger.grant("u", 10, idempotency_key="fund")
    return ledger
