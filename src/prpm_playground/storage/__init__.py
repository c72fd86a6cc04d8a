"""Storage: the port (``base``) and its SQL adapter (``sql``)."""

from .base import LedgerStorage, LedgerUnit
from .sql import SQLAlchemyStorage

__all__ = ["LedgerStorage", "LedgerUnit", "SQLAlchemyStorage"]
