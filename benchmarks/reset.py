"""The ResetJob against a naive per-account loop, in one run.

For SQLite (a temp file) and PostgreSQL (a scratch database created for the
run and dropped at the end), at 10,000 and 100,000 subscribed accounts whose
period has just ended, this measures:

- the set-based job: ``ResetJob.run()`` with the default batch of 1,000
  accounts per transaction;
- the naive loop it replaces (the original's design): for each due account,
  one transaction that reads the account (``SELECT … FOR UPDATE``), its
  grants and its holds, computes with the same rules as the job
  (``Book.settle``), and writes the rows back with one statement per kind of
  row, through SQLAlchemy Core: what a straightforward implementation does;
- for information, the ledger's own single-account path on the same
  accounts: one ``CreditLedger.open_account(user)`` each, which settles the
  account in one transaction of two round trips on PostgreSQL (how accounts
  are settled when a user touches them before the job runs).

Both run on identical copies of the same accounts (two table prefixes in one
database). Accounts are bulk-loaded as ``subscribe`` and ``spend`` would have
left them: a monthly allowance of 100 partly spent, and for some an old
rollover and purchased credits, with the matching journal.

The per-account loops are timed on up to ``--naive-limit`` accounts each
(default 3,000; the naive loop on the first, the ledger's path on the next);
at 100,000 their totals are those rates times 100,000, printed as an
extrapolation. Each is one transaction per account, so it grows linearly.
``--naive-limit 0`` times them on every account (half each).

After the runs it checks, on a sample, that the job and the loop left the
same balances and that ``verify()`` passes.

Run:  python benchmarks/reset.py [--sizes 10000,100000] [--naive-limit N] [--only sqlite|pg]
PostgreSQL URL: env PRPM_TEST_POSTGRES_URL, default
postgresql+asyncpg://postgres@127.0.0.1:5432/test

The last lines are ``result:`` lines (DESIGN.md §7): per backend, the speed-up
over the loop at the largest size (target >= 20), the job's seconds at
100,000 (target < 60 s) and the growth of its time per account from the
smallest to the largest size (target <= 1.5, i.e. linear).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select

import prpm_playground as pp
from prpm_playground._book import Book
from prpm_playground._ids import new_id
from prpm_playground.periods import month_number, period_start
from prpm_playground.storage.base import AccountState
from prpm_playground.storage.sql.ledger_store import write_rows
from prpm_playground.storage.sql.records import to_grant, to_hold, to_subscription

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger import scratch_database

ANCHOR = datetime(2026, 3, 1, tzinfo=UTC)
NOW = period_start(ANCHOR, 1) + timedelta(days=2)
SPEEDUP_TARGET = 20.0
SECONDS_TARGET = 60.0
GROWTH_TARGET = 1.5
CHUNK = 5_000
POLICY = pp.CreditPolicy()


@dataclass
class Case:
    backend: str
    size: int
    job_s: float
    report: pp.ResetReport
    naive_n: int
    naive_s: float
    path_n: int
    path_s: float

    @property
    def path_speedup(self) -> float:
        return self.path_s / self.path_n * self.size / self.job_s

    @property
    def naive_total_s(self) -> float:
        return self.naive_s / self.naive_n * self.size

    @property
    def speedup(self) -> float:
        return self.naive_total_s / self.job_s


def account_rows(n: int, seed: int = 7) -> tuple[list[dict[str, Any]], ...]:
    """Accounts, grants and entries as subscribe/grant/spend leave them, at ANCHOR."""
    rng = random.Random(seed)
    accounts: list[dict[str, Any]] = []
    grants: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        anchor = ANCHOR + timedelta(minutes=i % 1440)  # renewals spread over a day
        end = period_start(anchor, 1)
        accounts.append(
            {
                "id": i,
                "user_id": f"user-{i:06d}",
                "created_at": anchor,
                "sub_anchor": anchor,
                "sub_credits": 100,
                "sub_last_period": month_number(anchor),
                "sub_ends_after": None,
                "sub_next_credits": None,
                "sub_next_from": None,
                "due_at": end,
            }
        )
        made = []
        if i % 5 == 0:
            made.append(grant_row(i, anchor, "rollover", 15, end, None))
        monthly = grant_row(i, anchor, "monthly", 100, end, month_number(anchor))
        made.append(monthly)
        if i % 3 == 0:
            made.append(grant_row(i, anchor, "purchased", 20, None, None))
        balance = 0
        for g in made:
            balance += g["amount"]
            entries.append(entry(i, g["kind"], g["amount"], balance, anchor, grant_id=g["id"]))
        spent = rng.randint(0, 100)
        if spent:
            monthly["remaining"] -= spent
            draws = json.dumps([[monthly["id"], "monthly", spent]], separators=(",", ":"))
            entries.append(entry(i, "spend", -spent, balance - spent, anchor, draws=draws))
        grants.extend(made)
    return accounts, grants, entries


def grant_row(
    account: int,
    at: datetime,
    kind: str,
    amount: int,
    expires: datetime | None,
    period: int | None,
) -> dict[str, Any]:
    return {
        "id": new_id("grt"),
        "account_id": account,
        "kind": kind,
        "amount": amount,
        "remaining": amount,
        "priority": POLICY.priority_of(kind),  # type: ignore[arg-type]
        "effective_at": at,
        "expires_at": expires,
        "created_at": at,
        "description": kind,
        "period": period,
    }


def entry(
    account: int, type_: str, amount: int, balance: int, at: datetime, **extra: Any
) -> dict[str, Any]:
    return {
        "id": new_id("ent"),
        "account_id": account,
        "type": type_,
        "amount": amount,
        "balance_after": balance,
        "created_at": at,
        "description": type_,
        "grant_id": None,
        "hold_id": None,
        "draws": None,
        **extra,
    }


async def load(storage: pp.SQLAlchemyStorage, rows: tuple[list[dict[str, Any]], ...]) -> None:
    t = storage.tables
    async with storage.engine.begin() as conn:
        for table, data in zip((t.accounts, t.grants, t.entries), rows, strict=True):
            for start in range(0, len(data), CHUNK):
                await conn.execute(table.insert(), data[start : start + CHUNK])
    if storage.engine.dialect.name == "postgresql":
        # Settle the freshly loaded tables now, so autovacuum does not run
        # during a timed section.
        async with storage.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in (t.accounts, t.grants, t.entries):
                await conn.exec_driver_sql(f"VACUUM ANALYZE {table.name}")


async def bench(backend: str, url: str, size: int, naive_limit: int, log: Any) -> Case:
    prefix = f"b{size}_"
    job_store = pp.SQLAlchemyStorage(url, table_prefix=f"{prefix}job_")
    loop_store = pp.SQLAlchemyStorage(url, table_prefix=f"{prefix}loop_")
    started = time.perf_counter()
    rows = account_rows(size)
    for store in (job_store, loop_store):
        await store.migrate()
        await load(store, rows)
    log(
        f"{backend} {size:,}: loaded 2 x {sum(map(len, rows)):,} rows "
        f"in {time.perf_counter() - started:.0f}s"
    )

    clock = lambda: NOW  # noqa: E731
    job = pp.ResetJob(job_store, clock=clock)
    started = time.perf_counter()
    report = await job.run()
    job_s = time.perf_counter() - started
    assert (report.accounts_processed, report.ok) == (size, True), report
    log(f"{backend} {size:,}: job {job_s:.2f}s  ({report.summary()})")

    users = [r["user_id"] for r in rows[0]]
    n = len(users) // 2 if naive_limit <= 0 else min(naive_limit, len(users) // 2)
    started = time.perf_counter()
    await naive_loop(loop_store, users[:n])
    naive_s = time.perf_counter() - started
    log(f"{backend} {size:,}: naive loop {naive_s:.2f}s for {n:,} accounts")
    ledger = pp.CreditLedger(loop_store, clock=clock)
    started = time.perf_counter()
    for user in users[n : 2 * n]:
        await ledger.open_account(user)
    path_s = time.perf_counter() - started
    log(f"{backend} {size:,}: ledger's own path {path_s:.2f}s for {n:,} accounts")

    # The same rules, so the same balances; and the stored journal is consistent.
    checker = pp.CreditLedger(job_store, clock=clock)
    for user in random.Random(1).sample(users[: 2 * n], 50):
        a, b = await checker.balance(user), await ledger.balance(user)
        assert (a.available, a.breakdown) == (b.available, b.breakdown), (user, a, b)
        await checker.verify(user)
        await ledger.verify(user)
    for store in (job_store, loop_store):
        await store.close()
    return Case(backend, size, job_s, report, n, naive_s, n, path_s)


async def naive_loop(storage: pp.SQLAlchemyStorage, users: list[str]) -> None:
    """Settle each account in its own transaction: read, compute, write."""
    t, policy = storage.tables, POLICY
    acc, g, h = t.accounts, t.grants, t.holds
    for user in users:
        async with storage.engine.begin() as conn:
            a = (
                await conn.execute(select(acc).where(acc.c.user_id == user).with_for_update())
            ).one()
            grants = await conn.execute(select(g).where(g.c.account_id == a.id, g.c.remaining > 0))
            holds = await conn.execute(
                select(h).where(h.c.account_id == a.id, h.c.status == "active")
            )
            state = AccountState(
                user_id=user,
                created=False,
                grants=tuple(to_grant(r) for r in grants),
                holds=tuple(to_hold(r) for r in holds),
                subscription=to_subscription(
                    a.sub_anchor,
                    a.sub_credits,
                    a.sub_last_period,
                    a.sub_ends_after,
                    a.sub_next_credits,
                    a.sub_next_from,
                ),
                due_at=a.due_at,
            )
            book = Book(state, NOW)
            book.settle(policy.rollover_cap, policy.priorities)
            await write_rows(storage._sql, [(a.id, book.finish())], partial(_one_by_one, conn))


async def _one_by_one(conn: Any, statement: Any, rows: list[dict[str, Any]]) -> object:
    """The naive loop writes through SQLAlchemy's own executemany."""
    return await conn.execute(statement, rows)


def result_lines(cases: list[Case]) -> list[str]:
    lines = []
    for backend in dict.fromkeys(c.backend for c in cases):
        mine = sorted((c for c in cases if c.backend == backend), key=lambda c: c.size)
        big, small = mine[-1], mine[0]
        job_rate, naive_rate = big.size / big.job_s, big.naive_n / big.naive_s
        verdict = "pass" if big.speedup >= SPEEDUP_TARGET else "fail"
        lines.append(
            f"result: {backend}_reset_{big.size // 1000}k_accounts_per_s value={job_rate:.0f} "
            f"baseline={naive_rate:.0f} ratio={big.speedup:.1f} target={SPEEDUP_TARGET:g} {verdict}"
        )
        path_rate = big.path_n / big.path_s
        lines.append(
            f"result: {backend}_reset_{big.size // 1000}k_vs_ledger_path value={job_rate:.0f} "
            f"baseline={path_rate:.0f} ratio={big.path_speedup:.1f} target=none info"
        )
        if big.size == 100_000:
            verdict = "pass" if big.job_s < SECONDS_TARGET else "fail"
            lines.append(
                f"result: {backend}_reset_100k_seconds value={big.job_s:.2f} "
                f"baseline={SECONDS_TARGET:g} ratio={big.job_s / SECONDS_TARGET:.3f} "
                f"target=<1 {verdict}"
            )
        if big is not small:
            per_big, per_small = big.job_s / big.size, small.job_s / small.size
            growth = per_big / per_small
            verdict = "pass" if growth <= GROWTH_TARGET else "fail"
            lines.append(
                f"result: {backend}_reset_time_per_account_{big.size // 1000}k_vs_"
                f"{small.size // 1000}k value={per_big * 1e6:.1f}us "
                f"baseline={per_small * 1e6:.1f}us "
                f"ratio={growth:.3f} target=<={GROWTH_TARGET:g} {verdict}"
            )
    return lines


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated account counts")
    parser.add_argument(
        "--naive-limit", type=int, default=3_000, help="accounts per loop; 0: half each"
    )
    parser.add_argument("--only", choices=("sqlite", "pg"), help="run one backend")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    def log(msg: str) -> None:
        print(msg, flush=True)

    log(
        f"reset benchmark: sizes {sizes}, loops on up to {args.naive_limit or 'half'} accounts; "
        f"Python {sys.version.split()[0]}"
    )
    cases: list[Case] = []
    started = time.perf_counter()
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="prpm_bench_") as tmp:
            for size in sizes:
                url = f"sqlite+aiosqlite:///{Path(tmp) / f'reset{size}.db'}"
                cases.append(await bench("sqlite", url, size, args.naive_limit, log))
    if args.only in (None, "pg"):
        async with scratch_database(f"prpm_bench_reset_{os.getpid()}") as url:
            for size in sizes:
                cases.append(await bench("pg", url, size, args.naive_limit, log))
    log(f"total time {time.perf_counter() - started:.0f}s")

    head = (
        f"{'backend':8} {'accounts':>9} {'job s':>8} {'naive s':>9} {'speed-up':>9} "
        f"{'ledger path s':>14} {'speed-up':>9} {'loops n':>8}"
    )
    print()
    print(head)
    print("-" * len(head))
    for c in cases:
        path_total = c.path_s / c.path_n * c.size
        print(
            f"{c.backend:8} {c.size:>9,} {c.job_s:>8.2f} {c.naive_total_s:>8.1f}* "
            f"{c.speedup:>9.1f} {path_total:>13.1f}* {c.path_speedup:>9.1f} {c.naive_n:>8,}"
        )
    print("* each loop's time per account, measured on 'loops n' accounts, times the accounts")
    print()
    for line in result_lines(cases):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
