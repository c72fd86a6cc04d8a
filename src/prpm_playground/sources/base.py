"""The package source port: resolve a package id (and version) to its text."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict

__all__ = ["Package", "PackageSource", "PackageType"]

PackageType = str
"""A package's type as its source names it: ``cursor-rule``, ``claude-skill``, ``agent``, …"""


class Package(BaseModel):
    """A resolved prompt package.

    Attributes:
        id: The package id it was resolved from.
        name: Display name.
        type: The kind of package (``claude-skill``, ``cursor-rule``, ``agent``, …).
        version: The resolved version, or None when the source has no versions.
        text: The normalised text that becomes the system prompt.
        warnings: Problems found in the text that did not stop it from being
            used (invisible or bidirectional control characters, …).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    type: PackageType
    version: str | None = None
    text: str
    warnings: tuple[str, ...] = ()


class PackageSource(Protocol):
    """Somewhere packages come from: memory, a folder, or the PRPM registry."""

    async def get(self, package_id: str, version: str | None = None) -> Package:
        """Resolve a package.

        Raises:
            NotFound: No such package or version.
            InvalidRequest: The id or version is malformed, or the text is over
                the size cap.
        """
        ...
