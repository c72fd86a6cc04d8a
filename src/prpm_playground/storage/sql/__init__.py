"""The SQLAlchemy adapter: SQLite (embedded default) and PostgreSQL."""

from .store import SQLAlchemyStorage

__all__ = ["SQLAlchemyStorage"]
