"""The public surface: __all__ is exact, errors have stable codes."""

from __future__ import annotations

import types

import pytest

import prpm_playground
from prpm_playground import errors


def test_all_lists_exactly_the_public_names() -> None:
    # dir(): the names the package shows, loaded or not yet (they load lazily).
    public = {
        name
        for name in dir(prpm_playground)
        if not name.startswith("_")
        and not isinstance(getattr(prpm_playground, name), types.ModuleType)
    }
    assert public | {"__version__"} == set(prpm_playground.__all__)
    assert sorted(prpm_playground.__all__, key=str.lower) == sorted(
        set(prpm_playground.__all__), key=str.lower
    )


@pytest.mark.parametrize("name", prpm_playground.__all__)
def test_every_exported_name_imports(name: str) -> None:
    assert getattr(prpm_playground, name) is not None


def test_binding_names_exist() -> None:
    from prpm_playground import (  # noqa: F401
        AnthropicProvider,
        CompareRequest,
        CreditLedger,
        CreditPack,
        CreditPolicy,
        Estimator,
        IdempotencyConflict,
        InMemoryPackages,
        InsufficientCredits,
        InvalidRequest,
        LocalPackages,
        NotFound,
        OfflineProvider,
        Playground,
        PlaygroundError,
        PlaygroundRunner,
        RateLimits,
        RegistryPackages,
        ResetJob,
        ResetReport,
        RunRequest,
        SQLAlchemyStorage,
    )


EXPECTED_CODES = {
    "PlaygroundError": "playground_error",
    "InvalidRequest": "invalid_request",
    "NotFound": "not_found",
    "Conflict": "conflict",
    "IdempotencyConflict": "idempotency_conflict",
    "HoldNotActive": "hold_not_active",
    "InsufficientCredits": "insufficient_credits",
    "LedgerInvariantError": "ledger_invariant",
    "SchemaMismatch": "schema_mismatch",
    "RunInProgress": "run_in_progress",
    "RunFailed": "run_failed",
    "RateLimited": "rate_limited",
    "ModelUnavailable": "model_unavailable",
    "ModelOverloaded": "model_overloaded",
    "ProviderMisconfigured": "provider_misconfigured",
    "PackageSourceUnavailable": "package_source_unavailable",
    "StorageUnavailable": "storage_unavailable",
}


def test_error_codes_are_stable_and_unique() -> None:
    classes = {name: getattr(errors, name) for name in errors.__all__}
    assert {name: cls.code for name, cls in classes.items()} == EXPECTED_CODES
    assert all(issubclass(cls, errors.PlaygroundError) for cls in classes.values())


def test_error_bodies() -> None:
    body = errors.InsufficientCredits(required=4, available=1).to_dict()
    assert body == {
        "error": "insufficient_credits",
        "message": "insufficient credits: 4 required, 1 available",
        "required": 4,
        "available": 1,
    }
    conflict = errors.IdempotencyConflict("x", idempotency_key="k")
    assert isinstance(conflict, errors.Conflict)
    assert conflict.to_dict()["idempotency_key"] == "k"


def test_the_facade_signature() -> None:
    import inspect

    parameters = inspect.signature(prpm_playground.Playground).parameters
    assert list(parameters)[:8] == [
        "database_url",
        "storage",
        "provider",
        "packages",
        "payments",
        "policy",
        "clock",
        "catalog",
    ]
    assert parameters["database_url"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(
        p.kind is inspect.Parameter.KEYWORD_ONLY
        for name, p in parameters.items()
        if name != "database_url"
    )


def test_web_error_codes_are_stable() -> None:
    from prpm_playground.web import errors as web_errors

    assert {
        cls.__name__: cls.code
        for cls in (
            web_errors.Unauthorized,
            web_errors.PayloadTooLarge,
            web_errors.UnsupportedMediaType,
            web_errors.MethodNotAllowed,
            web_errors.RequestInvalid,
        )
    } == {
        "Unauthorized": "unauthorized",
        "PayloadTooLarge": "payload_too_large",
        "UnsupportedMediaType": "unsupported_media_type",
        "MethodNotAllowed": "method_not_allowed",
        "RequestInvalid": "invalid_request",
    }
