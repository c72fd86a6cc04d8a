"""SQLAlchemyStorage: migrations, prefixes, host engines, schema checks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, String, Table, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite

from prpm_playground import CreditLedger, InvalidRequest, SchemaMismatch, SQLAlchemyStorage
from prpm_playground.storage.sql.due import DueStatements
from prpm_playground.storage.sql.ledger_store import LedgerStatements
from prpm_playground.storage.sql.migrate import head_revision
from prpm_playground.storage.sql.tables import build_tables

from .conftest import INTEGRITY_ERRORS, PG_URL, Backend


async def _names(storage: SQLAlchemyStorage) -> dict[str, list[str]]:
    def read(sync_conn: Any) -> dict[str, list[str]]:
        insp = inspect(sync_conn)
        result: dict[str, list[str]] = {}
        for table in insp.get_table_names():
            names = [ix["name"] for ix in insp.get_indexes(table)]
            names += [uq["name"] for uq in insp.get_unique_constraints(table)]
            names += [fk["name"] for fk in insp.get_foreign_keys(table)]
            names += [ck["name"] for ck in insp.get_check_constraints(table)]
            result[table] = [n for n in names if n]
        return result

    async with storage.engine.connect() as conn:
        return await conn.run_sync(read)


async def test_migrate_is_idempotent_and_prefixed(backend: Backend) -> None:
    engine = await backend.make_engine()
    storage = SQLAlchemyStorage(engine, table_prefix="acme_")
    assert await storage.current_revision() is None
    await storage.migrate()
    await storage.migrate()
    assert await storage.current_revision() == head_revision()
    names = await _names(storage)
    assert set(names) == {
        "acme_accounts",
        "acme_grants",
        "acme_holds",
        "acme_entries",
        "acme_idempotency_keys",
        "acme_sessions",
        "acme_exchanges",
        "acme_shares",
        "acme_feedback",
        "acme_rate_limits",
        "acme_alembic_version",
    }
    for table, objects in names.items():
        assert all(n.startswith("acme_") for n in objects), (table, objects)
    if backend.name == "postgres":
        async with engine.connect() as conn:
            functions = (
                (
                    await conn.execute(
                        text(
                            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n"
                            " ON n.oid = p.pronamespace WHERE n.nspname = current_schema()"
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert functions == ["acme_open_account_v1"]


async def test_host_tables_untouched_and_engine_kept(backend: Backend) -> None:
    engine = await backend.make_engine()
    host = MetaData()
    users = Table(
        "users", host, Column("id", Integer, primary_key=True), Column("name", String(20))
    )
    async with engine.begin() as conn:
        await conn.run_sync(host.create_all)
        await conn.execute(users.insert().values(id=1, name="ada"))
    storage = SQLAlchemyStorage(engine)
    await storage.migrate()
    await CreditLedger(storage).open_account("ada")
    await storage.close()
    # The host's engine still works after close(), and its table and rows are intact.
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT name FROM users"))).scalar() == "ada"
    assert "users" not in build_tables("prpm_").metadata.tables


async def test_two_prefixes_share_a_database(backend: Backend) -> None:
    engine = await backend.make_engine()
    one, two = SQLAlchemyStorage(engine, table_prefix="one_"), SQLAlchemyStorage(engine)
    await one.migrate()
    await two.migrate()
    await CreditLedger(one).grant("u", 10, idempotency_key="g")
    assert (await CreditLedger(two).balance("u")).available == 5  # only the trial
    await one.close()
    await two.close()


async def test_schema_matches_tables(backend: Backend) -> None:
    engine = await backend.make_engine()
    storage = SQLAlchemyStorage(engine, table_prefix="cmp_")
    await storage.migrate()
    metadata = storage.tables.metadata

    def diff(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(
            sync_conn, opts={"compare_type": True, "version_table": "cmp_alembic_version"}
        )
        return [
            d
            for d in compare_metadata(context, metadata)
            if not (d[0] == "remove_table" and d[1].name == "cmp_alembic_version")
        ]

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_unmigrated_database_names_the_command(backend: Backend) -> None:
    engine = await backend.make_engine()
    storage = SQLAlchemyStorage(engine)
    with pytest.raises(SchemaMismatch) as caught:
        await CreditLedger(storage).balance("u")
    shown = engine.url.render_as_string(hide_password=True)
    assert f"prpm-playground db upgrade --url '{shown}'" in caught.value.message
    assert caught.value.code == "schema_mismatch"


@pytest.mark.parametrize("scheme", ["postgres://", "postgresql://"])
async def test_the_postgres_urls_platforms_hand_out_are_taken(scheme: str) -> None:
    require = PG_URL.split("://", 1)[1]
    storage = SQLAlchemyStorage(scheme + require, table_prefix="urlcheck_")
    try:
        assert storage.engine.url.drivername == "postgresql+asyncpg"
        assert await storage.current_revision() is None  # it connects; nothing of this prefix
    finally:
        await storage.close()


def test_a_missing_postgres_driver_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['asyncpg'] = None  # as if not installed\n"
        "from prpm_playground import SQLAlchemyStorage, InvalidRequest\n"
        "try:\n"
        "    SQLAlchemyStorage('postgres://u@db.example/app')\n"
        "except InvalidRequest as exc:\n"
        "    print(exc.message)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pip install 'prpm-playground[postgres]'" in result.stdout


async def test_newer_database_is_refused(backend: Backend) -> None:
    engine = await backend.make_engine()
    storage = SQLAlchemyStorage(engine)
    await storage.migrate()
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE prpm_alembic_version SET version_num = '9999_future'"))
    for fresh in (SQLAlchemyStorage(engine), SQLAlchemyStorage(engine)):
        with pytest.raises(SchemaMismatch) as caught:
            await fresh.migrate()
        assert "newer" in caught.value.message
        assert "pip install --upgrade prpm-playground" in caught.value.message
    with pytest.raises(SchemaMismatch):
        await CreditLedger(SQLAlchemyStorage(engine)).balance("u")


@pytest.mark.parametrize("prefix", ["", "Bad_", "1x", "a-b", "x" * 31, None])
def test_bad_prefix(prefix: Any) -> None:
    with pytest.raises(InvalidRequest):
        SQLAlchemyStorage("sqlite+aiosqlite://", table_prefix=prefix)


@pytest.mark.parametrize(
    "url",
    [
        "mysql+aiomysql://root@localhost/test",
        "sqlite+pysqlite:///plain.db",  # a named sync driver is refused, not replaced
        "postgresql+psycopg2://postgres@localhost/test",
        "not a url",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidRequest):
        SQLAlchemyStorage(url)


async def test_sqlite_settings(tmp_path: Any) -> None:
    storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    await storage.migrate()
    async with storage.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() >= 1000
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    await storage.close()


async def test_in_memory_sqlite(tmp_path: Any) -> None:
    storage = SQLAlchemyStorage("sqlite+aiosqlite://")
    await storage.migrate()
    ledger = CreditLedger(storage)
    await ledger.spend("u", 2, idempotency_key="s")
    assert (await ledger.balance("u")).available == 3
    await storage.close()


async def test_a_sqlite_file_is_not_reopened_per_transaction(tmp_path: Any) -> None:
    # Whatever pool SQLAlchemy would pick by default (2.0 picked none for
    # aiosqlite files), connections are kept and reused.
    storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path}/pooled.db")
    opened: list[object] = []
    event.listen(storage.engine.sync_engine, "connect", lambda conn, record: opened.append(conn))
    try:
        await storage.migrate()
        ledger = CreditLedger(storage)
        for n in range(20):
            await ledger.grant("u", 1, idempotency_key=f"g{n}")
            await ledger.balance("u")
    finally:
        await storage.close()
    assert 1 <= len(opened) <= 3


async def test_default_url_is_local_sqlite(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage = SQLAlchemyStorage()
    await storage.migrate()
    await storage.close()
    assert (tmp_path / "prpm_playground.db").exists()


async def test_failed_write_leaves_nothing(bare: CreditLedger, storage: SQLAlchemyStorage) -> None:
    # A constraint violation inside a unit of work rolls back every row of it.
    from prpm_playground.storage.base import Changes, EntryRecord

    async def broken() -> None:
        async with storage.account("rollback-user", write=True) as unit:
            await unit.apply(
                Changes(
                    new_entries=[
                        EntryRecord(
                            id="ent_bad",
                            type="spend",
                            amount=-1,
                            balance_after=-1,
                            created_at=__import__("datetime").datetime.now(
                                __import__("datetime").UTC
                            ),
                        )
                    ]
                )
            )

    with pytest.raises(INTEGRITY_ERRORS):
        await broken()
    assert await storage.audit("rollback-user") is None


async def test_sqlite_driver_writes_store_what_sqlalchemy_stores(tmp_path: Any) -> None:
    """The fast SQLite executemany stores every value exactly as SQLAlchemy's would."""
    from datetime import UTC, datetime, timedelta
    from functools import partial

    from prpm_playground._book import Book
    from prpm_playground.periods import month_number
    from prpm_playground.storage.base import AccountState, SubscriptionRecord
    from prpm_playground.storage.sql.ledger_store import write_rows

    at = datetime(2027, 1, 31, 9, 30, tzinfo=UTC)  # whole seconds: formats differ most
    book = Book(AccountState(user_id="u", created=True, grants=(), holds=()), at)
    book.add_grant("purchased", 7, priority=40, expires_at=at + timedelta(days=3), description="p")
    book.hold(3, expires_at=at + timedelta(minutes=5), idempotency_key="k", request_hash="h" * 64)
    book.spend(2, description="s", idempotency_key="s", request_hash="s" * 64)
    book.subscription = SubscriptionRecord(
        anchor=at, monthly_credits=5, last_period=month_number(at)
    )
    book._subscription_changed = True
    changes = book.finish()

    from prpm_playground.storage.sql.ledger_store import SQLiteExecutor

    async def through_sqlalchemy(conn: Any, statement: Any, rows: Any) -> None:
        await conn.execute(statement, rows)

    dumps = []
    # SQLAlchemy's own executemany; the reset job's driver executemany; the
    # ledger unit's statements on the driver thread.
    for way in ("sqlalchemy", "driver_many", "lite"):
        storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path}/{way}.db")
        await storage.migrate()
        async with storage.account("u", write=True) as unit:
            account_id = unit.account_id  # type: ignore[attr-defined]
        sql = storage._sql
        if way == "lite":
            async with storage._tx.lite(write=True) as tx:
                await SQLiteExecutor(tx, sql).write(changes, account_id)
        else:
            async with storage._tx.begin(write=True) as conn:
                many = sql.driver_many if way == "driver_many" else through_sqlalchemy
                await write_rows(sql, [(account_id, changes)], partial(many, conn))
        async with storage.engine.connect() as conn:
            # Every column but the account's own created_at (the wall clock).
            tables = ("grants", "holds", "entries", "idempotency_keys")
            dumps.append(
                [list(await conn.exec_driver_sql(f"SELECT * FROM prpm_{t}")) for t in tables]
                + [list(await conn.exec_driver_sql("SELECT sub_anchor, due_at FROM prpm_accounts"))]
            )
        await storage.close()
    assert dumps[0][0]
    assert dumps[0][2]
    assert dumps[0] == dumps[2]
    assert dumps[0] == dumps[1]
    assert "2027-01-31 09:30:00.000000" in str(dumps[0])


async def test_sqlite_driver_internals_are_checked(tmp_path: Any) -> None:
    """The installed aiosqlite has what the driver-thread transactions use; others are refused."""
    from prpm_playground.storage.sql.lite import check_driver

    storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path}/d.db")
    async with storage.engine.connect() as conn:
        check_driver((await conn.get_raw_connection()).driver_connection)
    await storage.close()
    with pytest.raises(RuntimeError, match="aiosqlite version is not supported"):
        check_driver(object())


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()])
def test_queries_for_active_holds_name_the_status_in_their_sql(dialect: Any) -> None:
    # Bound as a parameter, the status decides whether the partial index on
    # active holds applies: SQLite then prepares the statement again on every
    # execution, and PostgreSQL's generic plans cannot use the index.
    tables = build_tables("prpm_")
    ledger = LedgerStatements(tables)
    due = DueStatements(tables, ledger, postgres=False)
    for statement in (ledger.open[False], ledger.open[True], due.holds):
        sql = str(statement.compile(dialect=dialect))
        assert "prpm_holds.status = 'active'" in sql
        assert "status = ?" not in sql
        assert "status = %(" not in sql


async def test_storages_of_different_databases_migrate_at_once(backend: Backend) -> None:
    # Alembic keeps the running migration in module globals; two at once in
    # one process must not see each other's.
    storages = [SQLAlchemyStorage(await backend.make_engine()) for _ in range(4)]
    try:
        await asyncio.gather(*(storage.migrate() for storage in storages))
        for storage in storages:
            assert await storage.current_revision() == head_revision()
    finally:
        for storage in storages:
            await storage.close()


def test_migrations_in_two_threads_at_once(tmp_path: Any) -> None:
    def migrate(name: str) -> str | None:
        async def go() -> str | None:
            storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path}/{name}.db")
            try:
                await storage.migrate()
                return await storage.current_revision()
            finally:
                await storage.close()

        return asyncio.run(go())

    with ThreadPoolExecutor(4) as pool:
        revisions = list(pool.map(migrate, ["a", "b", "c", "d"]))
    assert revisions == [head_revision()] * 4
