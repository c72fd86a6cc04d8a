"""Four reset workers, separate processes, against one PostgreSQL database.

They share the work (each account is settled by exactly one of them) and
leave exactly the state a single run leaves.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from prpm_playground import CreditLedger, CreditPolicy, ResetJob, SQLAlchemyStorage
from prpm_playground.periods import period_start
from prpm_playground.testing import ManualClock

from .conftest import PG_URL, Backend, library_tables

ANCHOR = datetime(2025, 6, 30, 12, tzinfo=UTC)
NOW = period_start(ANCHOR, 3) + timedelta(days=1)
POLICY = CreditPolicy(trial_credits=0, rollover_cap=40)
USERS = [f"u{i:03d}" for i in range(150)]


async def seed(storage: SQLAlchemyStorage) -> None:
    """The same history, whatever the storage: subscriptions, spends, packs, holds."""
    clock = ManualClock(ANCHOR)
    ledger = CreditLedger(storage, policy=POLICY, clock=clock)
    for i, user in enumerate(USERS):
        await ledger.subscribe(user, monthly_credits=30 + i % 40)
        if i % 3:
            await ledger.spend(user, 1 + i % 25, idempotency_key="s")
        if i % 4 == 0:
            await ledger.grant(user, 10, kind="purchased", idempotency_key="p")
        if i % 5 == 0:
            await ledger.hold(user, 5, idempotency_key="h", ttl=timedelta(days=2))
        if i % 6 == 0:
            await ledger.unsubscribe(user)
    clock.set(period_start(ANCHOR, 1) + timedelta(days=3))
    for i, user in enumerate(USERS):
        if i % 7 == 0 and i % 6:  # some accounts are touched in between, settled lazily
            await ledger.spend(user, 1, idempotency_key="later")


async def state(storage: SQLAlchemyStorage) -> dict[str, object]:
    """Each account's balance and journal, without ids (they are random)."""
    clock = ManualClock(NOW)
    ledger = CreditLedger(storage, policy=POLICY, clock=clock)
    result: dict[str, object] = {}
    for user in USERS:
        await ledger.verify(user)
        audited = await storage.audit(user)
        assert audited is not None
        _, holds, entries = audited
        result[user] = (
            sorted((e.type, e.amount, e.balance_after, e.created_at) for e in entries),
            sorted((h.status, h.amount) for h in holds),
        )
    return result


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_four_worker_processes_equal_one_run(backend: Backend) -> None:
    tag = secrets.token_hex(3)
    single = SQLAlchemyStorage(PG_URL, table_prefix=f"one{tag}_")
    shared = SQLAlchemyStorage(PG_URL, table_prefix=f"four{tag}_")
    try:
        for storage in (single, shared):
            await storage.migrate()
            await seed(storage)
        due = await shared.count_due(NOW)
        assert due == len(USERS)

        report = await ResetJob(single, policy=POLICY, clock=lambda: NOW).run()
        assert report.accounts_processed == due

        policy_module = "tests.test_reset_workers:POLICY"
        command = [
            sys.executable, "-m", "prpm_playground", "reset", "run",
            "--url", PG_URL, "--table-prefix", shared.table_prefix,
            "--now", NOW.isoformat(), "--batch-size", "3", "--policy", policy_module,
        ]  # fmt: skip
        processes = [
            await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": os.getcwd()},
            )
            for _ in range(4)
        ]
        outputs = [await p.communicate() for p in processes]
        settled = []
        for process, (out, err) in zip(processes, outputs, strict=True):
            assert process.returncode == 0, err.decode()
            match = re.match(r"settled (\d+) accounts", out.decode())
            assert match, out.decode()
            settled.append(int(match.group(1)))
        # Every due account was settled by exactly one worker.
        assert sum(settled) == due
        assert await shared.count_due(NOW) == 0

        assert await state(shared) == await state(single)
        # Running again, in any number of workers, changes nothing.
        again = await ResetJob(shared, policy=POLICY, clock=lambda: NOW).run()
        assert again.accounts_processed == 0
    finally:
        for storage in (single, shared):
            await storage.close()
        engine = create_async_engine(PG_URL)
        async with engine.begin() as conn:
            for storage in (single, shared):
                for table in library_tables(storage.table_prefix):
                    await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table} CASCADE")
                await conn.exec_driver_sql(
                    f"DROP FUNCTION IF EXISTS {storage.table_prefix}open_account_v1"
                )
        await engine.dispose()
