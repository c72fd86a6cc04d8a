"""Packages held in memory: for tests, demos and hosts that load packages themselves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequest, NotFound
from ._text import DEFAULT_MAX_PACKAGE_BYTES, check_package_id, check_version, normalise
from .base import Package

__all__ = ["InMemoryPackages"]

_FIELDS = frozenset({"text", "name", "type", "version"})


class InMemoryPackages:
    """A package source backed by a mapping of package id to package.

    Each value is either the text itself (named after its id, of type
    ``"prompt"``, without a version), a mapping with ``text`` and optionally
    ``name``, ``type`` and ``version``, or a [`Package`][prpm_playground.sources.base.Package]
    (whose ``id`` must equal its key). Every text is normalised and checked when
    the source is built, so a broken package fails at start-up, not mid-request.

    Args:
        packages: Package id to text, mapping or ``Package``. Copied: later
            changes to the mapping are not seen.
        max_bytes: The largest text accepted, in UTF-8 bytes.

    Raises:
        ValueError: An id, version, field or text is invalid, or a text is over
            ``max_bytes``. Construction raises ``ValueError`` rather than
            ``InvalidRequest`` because the mistake is the host's configuration,
            not a user's request.

    Example:
        ```python
        packages = InMemoryPackages({
            "pirate": "Answer like a pirate.",
            "reviewer": {"text": "Review the code.", "type": "agent", "version": "1.0.0"},
        })
        package = await packages.get("reviewer", "1.0.0")
        ```
    """

    def __init__(
        self,
        packages: Mapping[str, str | Package | Mapping[str, Any]],
        *,
        max_bytes: int = DEFAULT_MAX_PACKAGE_BYTES,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError("max_bytes must be a positive int")
        self._packages: dict[str, Package] = {}
        for package_id, value in packages.items():
            try:
                self._packages[check_package_id(package_id)] = _build(package_id, value, max_bytes)
            except InvalidRequest as exc:
                raise ValueError(f"package {package_id!r}: {exc.message}") from None

    async def get(self, package_id: str, version: str | None = None) -> Package:
        """Return the package with this id (and version, when one is given).

        Raises:
            InvalidRequest: The id or version is malformed.
            NotFound: No package has this id, or its version differs from ``version``.
        """
        check_package_id(package_id)
        check_version(version)
        package = self._packages.get(package_id)
        if package is None:
            raise NotFound(f"package {package_id!r} not found")
        if version is not None and package.version != version:
            raise NotFound(f"package {package_id!r} has no version {version!r}")
        return package


def _build(package_id: str, value: object, max_bytes: int) -> Package:
    if isinstance(value, Package):
        if value.id != package_id:
            raise InvalidRequest(f"its Package has id {value.id!r}")
        check_version(value.version)
        text, warnings = normalise(value.text, max_bytes=max_bytes)
        # Keep the warnings it came with; recomputed ones repeat them, so merge.
        merged = tuple(dict.fromkeys((*value.warnings, *warnings)))
        return value.model_copy(update={"text": text, "warnings": merged})
    if isinstance(value, str):
        text, warnings = normalise(value, max_bytes=max_bytes)
        return Package(id=package_id, name=package_id, type="prompt", text=text, warnings=warnings)
    if isinstance(value, Mapping):
        unknown = set(value) - _FIELDS
        if unknown:
            raise InvalidRequest(f"unknown fields {sorted(map(str, unknown))}")
        raw_text = value.get("text")
        if not isinstance(raw_text, str):
            raise InvalidRequest("'text' must be a string")
        name = value.get("name", package_id)
        kind = value.get("type", "prompt")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("'name' must be a non-empty string")
        if not isinstance(kind, str) or not kind:
            raise InvalidRequest("'type' must be a non-empty string")
        version = check_version(value.get("version"))
        text, warnings = normalise(raw_text, max_bytes=max_bytes)
        return Package(
            id=package_id, name=name, type=kind, version=version, text=text, warnings=warnings
        )
    raise InvalidRequest(f"must be a str, a mapping or a Package, got {type(value).__name__}")
