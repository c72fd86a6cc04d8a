"""Storage: the port (``base``) and its SQL adapter (``sql``)."""

import typing

from .. import _lazy
from .base import LedgerStorage, LedgerUnit

if typing.TYPE_CHECKING:
    from .sql import SQLAlchemyStorage

# The adapter (and SQLAlchemy with it) loads when first asked for, not with the port.
__getattr__, __dir__ = _lazy.lazy_exports(__name__, {".sql": ("SQLAlchemyStorage",)})

__all__ = ["LedgerStorage", "LedgerUnit", "SQLAlchemyStorage"]
