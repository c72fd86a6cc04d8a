"""prpm_playground: the PRPM+ Playground as an embeddable Python SDK.

Run prompt packages against Claude and pay in credits, kept by an exact,
idempotent, concurrency-safe ledger over SQLite or PostgreSQL.
"""

from .config import CreditPack, CreditPolicy, GrantKind
from .errors import (
    Conflict,
    HoldNotActive,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    LedgerInvariantError,
    NotFound,
    PlaygroundError,
    SchemaMismatch,
)
from .ledger import CreditLedger
from .models import (
    Balance,
    Draw,
    Entry,
    EntryType,
    Grant,
    HistoryPage,
    Hold,
    HoldStatus,
    MonthlyAllowance,
)
from .reset import ResetJob, ResetReport
from .storage.sql import SQLAlchemyStorage

__version__ = "0.1.0"

__all__ = [
    "Balance",
    "Conflict",
    "CreditLedger",
    "CreditPack",
    "CreditPolicy",
    "Draw",
    "Entry",
    "EntryType",
    "Grant",
    "GrantKind",
    "HistoryPage",
    "Hold",
    "HoldNotActive",
    "HoldStatus",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidRequest",
    "LedgerInvariantError",
    "MonthlyAllowance",
    "NotFound",
    "PlaygroundError",
    "ResetJob",
    "ResetReport",
    "SQLAlchemyStorage",
    "SchemaMismatch",
    "__version__",
]
