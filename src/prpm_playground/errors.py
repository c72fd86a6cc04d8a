"""The error tree. Every error the library raises on purpose is a PlaygroundError.

Each class has a stable ``code`` (used in JSON error bodies and logs); codes
never change once released.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "HoldNotActive",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidRequest",
    "LedgerInvariantError",
    "ModelOverloaded",
    "ModelUnavailable",
    "NotFound",
    "PackageSourceUnavailable",
    "PlaygroundError",
    "ProviderMisconfigured",
    "RateLimited",
    "RunFailed",
    "RunInProgress",
    "SchemaMismatch",
    "StorageUnavailable",
]


class PlaygroundError(Exception):
    """Root of every error prpm_playground raises on purpose.

    Attributes:
        code: A stable, machine-readable identifier of the error kind.
        message: A human-readable explanation.
    """

    code: ClassVar[str] = "playground_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Return the extra, JSON-safe fields that describe this error."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"error": code, "message": text, **details}``."""
        return {"error": self.code, "message": self.message, **self.details()}


class InvalidRequest(PlaygroundError, ValueError):
    """The arguments are malformed or out of range; nothing was written.

    Also a ``ValueError``, as a bad argument is in plain Python.
    """

    code: ClassVar[str] = "invalid_request"


class NotFound(PlaygroundError):
    """The object does not exist, or does not belong to the caller."""

    code: ClassVar[str] = "not_found"


class Conflict(PlaygroundError):
    """The request contradicts the current state of an object."""

    code: ClassVar[str] = "conflict"


class IdempotencyConflict(Conflict):
    """An idempotency key was reused with different arguments."""

    code: ClassVar[str] = "idempotency_conflict"

    def __init__(self, message: str, *, idempotency_key: str) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key

    def details(self) -> dict[str, Any]:
        return {"idempotency_key": self.idempotency_key}


class HoldNotActive(Conflict):
    """A capture or release targeted a hold that is no longer active."""

    code: ClassVar[str] = "hold_not_active"

    def __init__(self, message: str, *, hold_id: str, status: str) -> None:
        super().__init__(message)
        self.hold_id = hold_id
        self.status = status

    def details(self) -> dict[str, Any]:
        return {"hold_id": self.hold_id, "status": self.status}


class InsufficientCredits(PlaygroundError):
    """The account cannot cover the amount; nothing was written.

    Attributes:
        required: Credits the operation needed.
        available: Credits the account had available.
    """

    code: ClassVar[str] = "insufficient_credits"

    def __init__(self, required: int, available: int) -> None:
        super().__init__(f"insufficient credits: {required} required, {available} available")
        self.required = required
        self.available = available

    def details(self) -> dict[str, Any]:
        return {"required": self.required, "available": self.available}


class LedgerInvariantError(PlaygroundError):
    """``CreditLedger.verify`` found stored data that breaks a ledger invariant.

    Attributes:
        user_id: The account that failed verification.
        problems: One line per broken invariant.
    """

    code: ClassVar[str] = "ledger_invariant"

    def __init__(self, user_id: str, problems: list[str]) -> None:
        super().__init__(f"ledger of {user_id!r} is inconsistent: " + "; ".join(problems))
        self.user_id = user_id
        self.problems = problems

    def details(self) -> dict[str, Any]:
        return {"problems": list(self.problems)}


class SchemaMismatch(PlaygroundError):
    """The database schema does not match this version of the library."""

    code: ClassVar[str] = "schema_mismatch"


class RunInProgress(Conflict):
    """A run with this id is still being processed; retry once it finished.

    Attributes:
        run_id: The run's id (its idempotency key).
    """

    code: ClassVar[str] = "run_in_progress"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} is still in progress")
        self.run_id = run_id

    def details(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


class RunFailed(Conflict):
    """A run with this id failed (the model or the database ended it); it stays failed.

    What it produced before failing, if anything, was charged and is in its
    session. Retry with a new run id.

    Attributes:
        run_id: The run.
        session_id: Its session, if it saved any output.
    """

    code: ClassVar[str] = "run_failed"

    def __init__(self, run_id: str, *, session_id: str | None = None) -> None:
        super().__init__(f"run {run_id!r} failed; retry with a new run_id")
        self.run_id = run_id
        self.session_id = session_id

    def details(self) -> dict[str, Any]:
        found = {"run_id": self.run_id}
        if self.session_id is not None:
            found["session_id"] = self.session_id
        return found


class RateLimited(PlaygroundError):
    """Too many requests, here or at the model provider; nothing was charged.

    Attributes:
        retry_after: Seconds to wait before trying again, when known.
    """

    code: ClassVar[str] = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {} if self.retry_after is None else {"retry_after": self.retry_after}


class StorageUnavailable(PlaygroundError):
    """The database is busy, restarting or unreachable; nothing was written.

    Raised after a bounded wait (a SQLite file locked by another process, a
    PostgreSQL connection killed or refused). Retrying later is safe: every
    write is idempotent and the failed one was rolled back.

    Attributes:
        retry_after: Seconds to wait before trying again.
    """

    code: ClassVar[str] = "storage_unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after}


class ModelUnavailable(PlaygroundError):
    """The model provider could not be reached or failed (timeouts, 5xx, a broken stream)."""

    code: ClassVar[str] = "model_unavailable"


class ModelOverloaded(ModelUnavailable):
    """The model provider is overloaded (Anthropic's 529 / ``overloaded_error``)."""

    code: ClassVar[str] = "model_overloaded"


class ProviderMisconfigured(PlaygroundError):
    """The provider refused our credentials or permissions: an operator must fix it."""

    code: ClassVar[str] = "provider_misconfigured"


class PackageSourceUnavailable(PlaygroundError):
    """The package source could not be reached or answered something unusable.

    Raised after retries when the registry is down (connection failures, 5xx),
    on timeouts, when it refuses the playground itself (401, 403, 407, 429), and
    when its answer breaks the API contract (not JSON, wrong field types).
    """

    code: ClassVar[str] = "package_source_unavailable"
