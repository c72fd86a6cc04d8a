"""Quickstart: a credit ledger on a local SQLite file, no API key needed.

Opens an account (trial credits), grants a purchased pack, holds credits for
a run, captures what the run cost, then prints the balance and the history.
Run it again and it shows the same effects: every write is idempotent.

    python examples/quickstart.py [database-url]
"""

from __future__ import annotations

import asyncio
import sys

import prpm_playground as pp


async def main(url: str) -> None:
    storage = pp.SQLAlchemyStorage(url)
    await storage.migrate()
    ledger = pp.CreditLedger(storage)
    user = "quickstart-user"
    try:
        opened = await ledger.open_account(user)
        print(f"opened {user}: {opened.available} trial credits")

        await ledger.grant(
            user, 100, kind="purchased", idempotency_key="pack-small-1", description="Small pack"
        )
        hold = await ledger.hold(user, 12, idempotency_key="run-1")
        print(f"held {hold.amount} for a run (expires {hold.expires_at:%H:%M} UTC)")
        hold = await ledger.capture(hold.id, 7, description="Run of @prpm/example")
        print(f"captured {hold.captured}; {hold.amount - hold.captured} returned")

        balance = await ledger.balance(user)
        print(f"\nbalance: available={balance.available} held={balance.held} total={balance.total}")
        for kind, credits in balance.breakdown.items():
            if credits:
                print(f"  {kind:<10} {credits:>5}")

        print("\nhistory (newest first):")
        for entry in (await ledger.history(user)).entries:
            paid = ", ".join(f"{d.kind} {d.amount}" for d in entry.draws)
            print(
                f"  {entry.created_at:%Y-%m-%d %H:%M:%S}  {entry.type:<9} {entry.amount:>+5}"
                f"  → {entry.balance_after:>4}  {entry.description or ''}"
                + (f"  (paid from: {paid})" if paid else "")
            )
        await ledger.verify(user)
        print("\nverify(): ledger consistent")
    finally:
        await storage.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sqlite+aiosqlite:///./quickstart.db"))
