"""History pages, filters, cursors, CSV export, and verify()."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, update

from prpm_playground import (
    CreditLedger,
    InvalidRequest,
    LedgerInvariantError,
    SQLAlchemyStorage,
)
from prpm_playground.testing import ManualClock


async def test_history_newest_first_and_paged(bare: CreditLedger, user: str) -> None:
    await bare.grant(user, 100, idempotency_key="g")
    for i in range(25):
        await bare.spend(user, 1, idempotency_key=f"s{i}", description=f"run {i}")
    seen = []
    cursor = None
    while True:
        page = await bare.history(user, limit=10, cursor=cursor)
        seen.extend(page.entries)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 26
    assert len({e.id for e in seen}) == 26
    assert [e.description for e in seen[:2]] == ["run 24", "run 23"]
    assert seen[-1].type == "bonus"
    assert [e.balance_after for e in seen[:-1]] == list(range(75, 100))


async def test_history_type_filter(ledger: CreditLedger, user: str) -> None:
    await ledger.grant(user, 10, kind="purchased", idempotency_key="p")
    await ledger.spend(user, 2, idempotency_key="s")
    page = await ledger.history(user, types=["purchased", "trial"])
    assert [e.type for e in page.entries] == ["purchased", "trial"]
    assert (await ledger.history(user, types=[])).entries == ()


async def test_history_default_and_limits(bare: CreditLedger, user: str) -> None:
    await bare.grant(user, 100, idempotency_key="g")
    for i in range(60):
        await bare.spend(user, 1, idempotency_key=f"s{i}")
    assert len((await bare.history(user)).entries) == 50
    assert len((await bare.history(user, limit=200)).entries) == 61
    for limit in (0, 201, True, "5"):
        with pytest.raises(InvalidRequest):
            await bare.history(user, limit=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("cursor", ["", "garbage", "c2VxOng", "bm9wZTox", "x" * 100])
async def test_invalid_cursor(bare: CreditLedger, user: str, cursor: str) -> None:
    with pytest.raises(InvalidRequest):
        await bare.history(user, cursor=cursor)


async def test_unknown_type_filter(bare: CreditLedger, user: str) -> None:
    with pytest.raises(InvalidRequest):
        await bare.history(user, types=["refund"])
    with pytest.raises(InvalidRequest):
        await bare.history(user, types="refund")


async def test_single_type_as_string(ledger: CreditLedger, user: str) -> None:
    await ledger.spend(user, 1, idempotency_key="s")
    assert [e.type for e in (await ledger.history(user, types="spend")).entries] == ["spend"]


async def test_export_csv(bare: CreditLedger, user: str) -> None:
    await bare.grant(user, 1200, idempotency_key="g", description="=HYPERLINK(evil)")
    for i in range(600):  # more than one export page
        await bare.spend(user, 2, idempotency_key=f"s{i}", description=f'run "{i}", ok')
    lines = [line async for line in bare.export_csv(user)]
    rows = list(csv.reader(io.StringIO("".join(lines))))
    assert rows[0] == ["created_at", "type", "amount", "balance_after", "description"]
    assert len(rows) == 602
    assert rows[1][1:] == ["spend", "-2", "0", 'run "599", ok']
    assert rows[-1][1:] == ["bonus", "1200", "1200", "'=HYPERLINK(evil)"]
    only = [line async for line in bare.export_csv(user, types=["bonus"])]
    assert len(only) == 2


async def test_csv_and_json_write_an_instant_the_same_way(
    bare: CreditLedger, user: str, clock: ManualClock
) -> None:
    clock.set(datetime(2027, 1, 31, 9, 30, 0, 250000, tzinfo=UTC))
    await bare.grant(user, 5, idempotency_key="g")
    [row] = list(
        csv.reader(io.StringIO("".join([line async for line in bare.export_csv(user)][1:])))
    )
    [entry] = (await bare.history(user)).entries
    in_json = json.loads(entry.model_dump_json())["created_at"]
    assert row[0] == in_json == "2027-01-31T09:30:00.250000Z"


async def test_verify_detects_tampering(
    bare: CreditLedger, storage: SQLAlchemyStorage, user: str
) -> None:
    grant = await bare.grant(user, 10, idempotency_key="g")
    await bare.spend(user, 3, idempotency_key="s")
    await bare.verify(user)
    grants = storage.tables.grants
    async with storage.engine.begin() as conn:
        await conn.execute(update(grants).where(grants.c.id == grant.id).values(remaining=9))
    with pytest.raises(LedgerInvariantError) as caught:
        await bare.verify(user)
    assert caught.value.code == "ledger_invariant"
    assert any(grant.id in problem for problem in caught.value.problems)


async def test_verify_unknown_user_is_fine(bare: CreditLedger) -> None:
    await bare.verify("nobody-at-all")


async def test_verify_checks_release_entries(
    bare: CreditLedger, storage: SQLAlchemyStorage, user: str
) -> None:
    await bare.grant(user, 10, idempotency_key="g")
    released = await bare.hold(user, 4, idempotency_key="h1")
    await bare.release(released.id)
    active = await bare.hold(user, 2, idempotency_key="h2")
    await bare.verify(user)
    entries = storage.tables.entries
    async with storage.engine.begin() as conn:
        (account_id,) = (
            await conn.execute(select(entries.c.account_id).where(entries.c.hold_id == released.id))
        ).one()
        for n, hold_id in enumerate((released.id, active.id)):  # a second one; one too early
            await conn.execute(
                insert(entries).values(
                    id=f"ent_forged{n}{user[-6:]}",
                    account_id=account_id,
                    type="release",
                    amount=0,
                    balance_after=4,
                    created_at=datetime.now(UTC),
                    hold_id=hold_id,
                )
            )
    with pytest.raises(LedgerInvariantError) as caught:
        await bare.verify(user)
    assert sum("release entries" in problem for problem in caught.value.problems) == 2
