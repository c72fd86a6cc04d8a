"""Spend throughput of ``CreditLedger`` against a raw-SQL floor, in one run.

For SQLite (a temp file) and PostgreSQL (a scratch database created for the
run and dropped at the end) this measures ``CreditLedger.spend(user, 1, ...)``
in operations per second at concurrency 1 and 16 (asyncio tasks sharing one
ledger and one storage), on one hot account and on 1,000 accounts picked at
random per operation.

Next to each figure it measures a floor on the same database, with the same
concurrency and account pattern: one transaction per operation doing a
guarded ``UPDATE ... SET balance = balance - 1 WHERE id = :id AND balance >= 1
RETURNING balance`` and one journal ``INSERT``. The floor runs on a plain
``create_async_engine(url)`` (SQLAlchemy defaults, plus the library's SQLite
pragmas) and opens its transactions with the library's own ``Transactions``
(``BEGIN IMMEDIATE`` and one asyncio writer lock on SQLite), so the ratio
isolates what the ledger adds on top of the minimum a journaled spend costs.
Ledger and floor runs alternate, so drift on a noisy machine hits both.

Run:  python benchmarks/ledger.py [--duration S] [--rounds N] [--warmup S]
PostgreSQL URL: env PRPM_TEST_POSTGRES_URL, default
postgresql+asyncpg://postgres@127.0.0.1:5432/test

The last lines are one ``result:`` line per case (DESIGN.md §7). The
PostgreSQL hot-account cases are the headline figures, target ratio 0.5;
the others are informational. Exit status is 0 unless something raises
(including a failed correctness check after the runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import prpm_playground as pp
from prpm_playground.storage.sql.engine import Transactions, configure

PG_URL = os.environ.get(
    "PRPM_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
N_ACCOUNTS = 1_000
HOT_FUNDS = 10**12
MANY_FUNDS = 10**9
TARGET = 0.5
CONCURRENCY = (1, 16)
PATTERNS = ("hot", "many")

Op = Callable[[int], Awaitable[None]]


# -- the floor: the least a journaled, guarded spend can cost ------------------------

_id = BigInteger().with_variant(Integer(), "sqlite")
floor_md = MetaData()
floor_accounts = Table(
    "bench_floor_accounts",
    floor_md,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("balance", BigInteger, nullable=False),
    CheckConstraint("balance >= 0", name="bench_floor_balance_ck"),
)
floor_journal = Table(
    "bench_floor_journal",
    floor_md,
    Column("seq", _id, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("account_id", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    UniqueConstraint("account_id", "idempotency_key", name="bench_floor_journal_key_uq"),
)


class Floor:
    """Raw SQL spends on the floor tables through SQLAlchemy Core."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.tx = Transactions(engine)
        acc = floor_accounts
        self._update = (
            update(acc)
            .where(acc.c.id == bindparam("acct"), acc.c.balance >= 1)
            .values(balance=acc.c.balance - 1)
            .returning(acc.c.balance)
        )
        self._insert = insert(floor_journal)

    async def setup(self, hot_funds: int, many_funds: int) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(floor_md.create_all)
        async with self.tx.begin(write=True) as conn:
            await conn.execute(
                insert(floor_accounts),
                [{"id": 0, "balance": hot_funds}]
                + [{"id": i + 1, "balance": many_funds} for i in range(N_ACCOUNTS)],
            )

    async def spend(self, account: int, key: str) -> None:
        async with self.tx.begin(write=True) as conn:
            balance = (await conn.execute(self._update, {"acct": account})).scalar()
            if balance is None:
                raise RuntimeError(f"floor account {account} is out of credits")
            await conn.execute(
                self._insert,
                {
                    "id": "ent_" + secrets.token_hex(12),
                    "account_id": account,
                    "amount": -1,
                    "balance_after": balance,
                    "created_at": datetime.now(UTC).replace(tzinfo=None),
                    "idempotency_key": key,
                },
            )

    async def totals(self) -> tuple[int, int, int]:
        """(hot balance, sum of the other balances, journal rows)."""
        acc = floor_accounts
        async with self.tx.begin(write=False) as conn:
            hot = (await conn.execute(select(acc.c.balance).where(acc.c.id == 0))).scalar_one()
            rest = (
                await conn.execute(select(func.sum(acc.c.balance)).where(acc.c.id > 0))
            ).scalar_one()
            rows = (
                await conn.execute(select(func.count()).select_from(floor_journal))
            ).scalar_one()
        return int(hot), int(rest), int(rows)


# -- running a case -------------------------------------------------------------------


@dataclass
class Tally:
    ops: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


@dataclass
class Case:
    backend: str
    pattern: str
    concurrency: int
    ledger: Tally = field(default_factory=Tally)
    floor: Tally = field(default_factory=Tally)

    @property
    def name(self) -> str:
        return f"{self.backend}_{self.pattern}_c{self.concurrency}_spend_ops"

    @property
    def headline(self) -> bool:
        return self.backend == "pg" and self.pattern == "hot"

    @property
    def ratio(self) -> float:
        return self.ledger.rate / self.floor.rate if self.floor.rate else 0.0


_keys = 0


def next_key() -> str:
    global _keys
    _keys += 1
    return f"bench-{_keys:09d}"


async def run_for(op: Op, pick: Callable[[], int], tasks: int, seconds: float) -> Tally:
    """Run ``op`` from ``tasks`` tasks until ``seconds`` have passed; count completions."""
    deadline = time.perf_counter() + seconds
    counts = [0] * tasks

    async def worker(i: int) -> None:
        while time.perf_counter() < deadline:
            await op(pick())
            counts[i] += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    return Tally(sum(counts), time.perf_counter() - start)


@dataclass
class Spent:
    """Successful spends per side and pattern, for the correctness checks."""

    ledger: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))
    floor: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))


async def bench_backend(
    backend: str, url: str, args: argparse.Namespace, log: Callable[[str], None]
) -> list[Case]:
    storage = pp.SQLAlchemyStorage(url, table_prefix="bench_")
    floor_engine = create_async_engine(url)
    configure(floor_engine)  # SQLite: the same WAL/busy-timeout pragmas as the library
    floor = Floor(floor_engine)
    cases: list[Case] = []
    try:
        await storage.migrate()
        ledger = pp.CreditLedger(storage, policy=pp.CreditPolicy(trial_credits=0))
        hot = "bench-hot"
        users = [f"bench-user-{i:04d}" for i in range(N_ACCOUNTS)]

        t0 = time.perf_counter()
        await ledger.grant(hot, HOT_FUNDS, kind="purchased", idempotency_key="fund-hot")
        sem = asyncio.Semaphore(16)

        async def fund(user: str) -> None:
            async with sem:
                await ledger.grant(user, MANY_FUNDS, kind="purchased", idempotency_key="fund")

        await asyncio.gather(*(fund(u) for u in users))
        await floor.setup(HOT_FUNDS, MANY_FUNDS)
        # Statistics as a live database has them, so neither side is timed
        # while autovacuum analyses freshly filled tables and plans get rebuilt.
        async with storage.engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
        async with floor_engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
        log(f"{backend}: funded 1 + {N_ACCOUNTS} accounts in {time.perf_counter() - t0:.1f}s")

        spent = Spent()
        rng = random.Random(1234)

        for pattern in PATTERNS:
            if pattern == "hot":
                ledger_pick: Callable[[], int] = lambda: -1  # noqa: E731
                floor_pick: Callable[[], int] = lambda: 0  # noqa: E731
            else:
                ledger_pick = lambda: rng.randrange(N_ACCOUNTS)  # noqa: E731
                floor_pick = lambda: rng.randrange(N_ACCOUNTS) + 1  # noqa: E731

            async def ledger_op(i: int, _pattern: str = pattern) -> None:
                user = hot if i < 0 else users[i]
                await ledger.spend(user, 1, idempotency_key=next_key())
                spent.ledger[_pattern] += 1

            async def floor_op(i: int, _pattern: str = pattern) -> None:
                await floor.spend(i, next_key())
                spent.floor[_pattern] += 1

            for conc in CONCURRENCY:
                case = Case(backend, pattern, conc)
                await run_for(ledger_op, ledger_pick, conc, args.warmup)
                await run_for(floor_op, floor_pick, conc, args.warmup)
                for r in range(args.rounds):
                    order = (
                        (ledger_op, ledger_pick, case.ledger),
                        (floor_op, floor_pick, case.floor),
                    )
                    for op, pick, tally in order if r % 2 == 0 else reversed(order):
                        got = await run_for(op, pick, conc, args.duration)
                        tally.ops += got.ops
                        tally.seconds += got.seconds
                log(
                    f"{backend:6} {pattern:4} c={conc:<2}  ledger {case.ledger.rate:8.1f} ops/s"
                    f"  floor {case.floor.rate:8.1f} ops/s  ratio {case.ratio:.3f}"
                )
                cases.append(case)

        await check(backend, ledger, floor, hot, users, spent, log)
        if args.count_statements:
            await count_statements(backend, storage, floor, ledger, hot, log)
    finally:
        await storage.close()
        await floor_engine.dispose()
    return cases


async def check(
    backend: str,
    ledger: pp.CreditLedger,
    floor: Floor,
    hot: str,
    users: list[str],
    spent: Spent,
    log: Callable[[str], None],
) -> None:
    """Correctness held: invariants verify and balances equal funding minus spends."""
    await ledger.verify(hot)
    balance = await ledger.balance(hot)
    expected = HOT_FUNDS - spent.ledger["hot"]
    if balance.available != expected:
        raise RuntimeError(f"{backend}: hot balance {balance.available}, expected {expected}")
    sem = asyncio.Semaphore(16)

    async def available(user: str) -> int:
        async with sem:
            return (await ledger.balance(user)).available

    total = sum(await asyncio.gather(*(available(u) for u in users)))
    expected_many = N_ACCOUNTS * MANY_FUNDS - spent.ledger["many"]
    if total != expected_many:
        raise RuntimeError(f"{backend}: 1,000 accounts hold {total}, expected {expected_many}")
    for user in random.Random(99).sample(users, 10):
        await ledger.verify(user)
    f_hot, f_rest, f_rows = await floor.totals()
    f_spent = spent.floor["hot"] + spent.floor["many"]
    if (f_hot, f_rest, f_rows) != (
        HOT_FUNDS - spent.floor["hot"],
        N_ACCOUNTS * MANY_FUNDS - spent.floor["many"],
        f_spent,
    ):
        raise RuntimeError(f"{backend}: floor totals {(f_hot, f_rest, f_rows)} do not add up")
    log(
        f"{backend}: checks passed - hot account verify() ok, balance {balance.available:,} "
        f"= funded - {spent.ledger['hot']:,} spends; 1,000 accounts sum to funded - "
        f"{spent.ledger['many']:,} spends; floor totals add up"
    )


async def count_statements(
    backend: str,
    storage: pp.SQLAlchemyStorage,
    floor: Floor,
    ledger: pp.CreditLedger,
    hot: str,
    log: Callable[[str], None],
) -> None:
    """Statements the driver executes per spend (c=1, hot account), and pool checkouts."""
    n = 200

    def counting(engine: AsyncEngine) -> tuple[dict[str, int], Callable[[], None]]:
        seen = {"statements": 0, "checkouts": 0}

        def on_exec(*_a: Any) -> None:
            seen["statements"] += 1

        def on_checkout(*_a: Any) -> None:
            seen["checkouts"] += 1

        event.listen(engine.sync_engine, "before_cursor_execute", on_exec)
        event.listen(engine.sync_engine.pool, "checkout", on_checkout)

        def remove() -> None:
            event.remove(engine.sync_engine, "before_cursor_execute", on_exec)
            event.remove(engine.sync_engine.pool, "checkout", on_checkout)

        return seen, remove

    seen, remove = counting(storage.engine)
    for _ in range(n):
        await ledger.spend(hot, 1, idempotency_key=next_key())
    remove()
    ledger_stmts, ledger_checkouts = seen["statements"] / n, seen["checkouts"] / n
    pre_ping = bool(storage.engine.sync_engine.pool._pre_ping)
    seen, remove = counting(floor.engine)
    for _ in range(n):
        await floor.spend(0, next_key())
    remove()
    extra = ""
    if backend == "pg":
        extra = " (PostgreSQL also sends BEGIN and COMMIT, which these counts leave out"
        extra += "; pool_pre_ping adds BEGIN, ';', ROLLBACK per checkout)" if pre_ping else ")"
    log(
        f"{backend}: statements per spend (c=1, hot): ledger {ledger_stmts:.1f}, "
        f"floor {seen['statements'] / n:.1f}; pool checkouts per spend: ledger "
        f"{ledger_checkouts:.1f}, floor {seen['checkouts'] / n:.1f}; "
        f"ledger engine pool_pre_ping={pre_ping}{extra}"
    )


# -- scratch databases ------------------------------------------------------------------


async def pg_admin(url: str, sql: str) -> None:
    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username,
        password=u.password,
        database=u.database,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_database(name: str) -> AsyncIterator[str]:
    """A PostgreSQL database created for the run and dropped after; yields its URL."""
    await pg_admin(PG_URL, f'DROP DATABASE IF EXISTS "{name}"')
    await pg_admin(PG_URL, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await pg_admin(PG_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def print_table(cases: list[Case]) -> None:
    head = (
        f"{'backend':8} {'pattern':14} {'conc':>4} "
        f"{'ledger ops/s':>13} {'floor ops/s':>12} {'ratio':>6}"
    )
    print()
    print(head)
    print("-" * len(head))
    for c in cases:
        pattern = "1 hot account" if c.pattern == "hot" else "1,000 accounts"
        print(
            f"{c.backend:8} {pattern:14} {c.concurrency:>4} {c.ledger.rate:>13.1f} "
            f"{c.floor.rate:>12.1f} {c.ratio:>6.3f}"
        )
    print()


def result_line(c: Case) -> str:
    if c.headline:
        target, verdict = f"{TARGET}", "pass" if c.ratio >= TARGET else "fail"
    else:
        target, verdict = "none", "info"
    return (
        f"result: {c.name} value={c.ledger.rate:.1f} baseline={c.floor.rate:.1f} "
        f"ratio={c.ratio:.3f} target={target} {verdict}"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating ledger/floor rounds")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per side")
    parser.add_argument(
        "--no-count-statements",
        dest="count_statements",
        action="store_false",
        help="skip counting SQL statements per spend",
    )
    parser.add_argument("--only", choices=("sqlite", "pg"), help="run one backend")
    args = parser.parse_args()

    def log(msg: str) -> None:
        print(msg, flush=True)

    log(
        f"spend benchmark: {args.rounds} x {args.duration}s per side and case "
        f"after {args.warmup}s warm-up; concurrency {CONCURRENCY}; Python {sys.version.split()[0]}"
    )
    cases: list[Case] = []
    started = time.perf_counter()
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="prpm_bench_") as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            cases += await bench_backend("sqlite", url, args, log)
    if args.only in (None, "pg"):
        async with scratch_database(f"prpm_bench_{os.getpid()}") as url:
            cases += await bench_backend("pg", url, args, log)
    log(f"total time {time.perf_counter() - started:.0f}s")

    print_table(cases)
    for c in sorted(cases, key=lambda c: (c.headline, c.backend, c.pattern, c.concurrency)):
        print(result_line(c))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
