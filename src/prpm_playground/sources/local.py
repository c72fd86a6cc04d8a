"""Packages read from a folder on disk."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest, NotFound
from ._text import DEFAULT_MAX_PACKAGE_BYTES, check_package_id, check_version, normalise
from .base import Package

__all__ = ["LocalPackages"]

logger = logging.getLogger(__name__)

_TEXT_SUFFIXES = (".md", ".mdc", ".txt")
_MANIFEST = "prpm.json"
_SKILL = "SKILL.md"
# prpm.json holds a few fields; anything larger is not a manifest.
_MAX_MANIFEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class _Found:
    path: Path
    name: str
    type: str
    version: str | None


class LocalPackages:
    """A package source that reads packages from a folder.

    Package ``foo`` is either a folder ``directory/foo/`` or a single file
    ``directory/foo.md``, ``foo.mdc`` or ``foo.txt`` (a folder wins when both
    exist); scoped ids ``@scope/name`` live in ``directory/@scope/``. In a
    folder the text is, in order: the file named by ``"main"`` in ``prpm.json``,
    ``SKILL.md``, or the first (by name) ``*.md``, then ``*.mdc``, then
    ``*.txt``. ``prpm.json`` may also give ``name``, ``type`` (or ``format``)
    and ``version``. Without it the name is the id, the version None, and the
    type ``claude-skill`` for a ``SKILL.md``, ``cursor-rule`` for a ``.mdc``,
    ``prompt`` otherwise. The text is used as is, YAML front matter included.

    Nothing outside ``directory`` is ever read: every path is resolved and
    refused (as not found) if it, or a symlink on the way, leads outside.
    Files are read in a worker thread.

    Args:
        directory: The folder holding the packages; it must exist.
        max_bytes: The largest text accepted, in UTF-8 bytes; larger files are
            refused before they are read.

    Raises:
        ValueError: ``directory`` is not a folder, or ``max_bytes`` is not positive.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_PACKAGE_BYTES,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError("max_bytes must be a positive int")
        root = Path(directory).resolve()
        if not root.is_dir():
            raise ValueError(f"{os.fspath(directory)!r} is not a folder")
        self._root = root
        self._max_bytes = max_bytes

    @property
    def directory(self) -> Path:
        """The resolved folder packages are read from."""
        return self._root

    async def get(self, package_id: str, version: str | None = None) -> Package:
        """Read the package with this id (and version, when one is given).

        Raises:
            InvalidRequest: The id or version is malformed, the text is over the
                cap or not UTF-8, or the package's ``prpm.json`` is malformed.
            NotFound: No such package, its version differs from ``version``, or
                its path leads outside the folder.
        """
        check_package_id(package_id)
        check_version(version)
        return await asyncio.to_thread(self._read_package, package_id, version)

    # Everything below runs in a worker thread.

    def _read_package(self, package_id: str, version: str | None) -> Package:
        try:
            return self._read_package_unguarded(package_id, version)
        except (FileNotFoundError, NotADirectoryError):
            # Removed or replaced between the lookup and the read.
            raise NotFound(f"package {package_id!r} not found") from None

    def _read_package_unguarded(self, package_id: str, version: str | None) -> Package:
        found = self._find(package_id)
        if version is not None and found.version != version:
            raise NotFound(f"package {package_id!r} has no version {version!r}")
        raw = self._read_capped(found.path, self._max_bytes, package_id)
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(
                f"package {package_id!r} is not valid UTF-8 (byte {exc.start})"
            ) from None
        text, warnings = normalise(decoded, max_bytes=self._max_bytes)
        return Package(
            id=package_id,
            name=found.name,
            type=found.type,
            version=found.version,
            text=text,
            warnings=warnings,
        )

    def _inside(self, path: Path, package_id: str) -> Path | None:
        """``path`` resolved, or None if it does not exist; NotFound if it escapes."""
        if not path.exists():
            return None
        resolved = path.resolve()
        if not resolved.is_relative_to(self._root):
            logger.warning("package %r leads outside %s; refused", package_id, self._root)
            raise NotFound(f"package {package_id!r} not found")
        return resolved

    def _find(self, package_id: str) -> _Found:
        # The id was checked: at most one "/", no "..", so this stays a child path.
        folder = self._inside(self._root / package_id, package_id)
        if folder is not None and folder.is_dir():
            return self._find_in_folder(folder, package_id)
        for suffix in _TEXT_SUFFIXES:
            file = self._inside(self._root / f"{package_id}{suffix}", package_id)
            if file is not None and file.is_file():
                return _Found(path=file, name=package_id, type=_type_of(file), version=None)
        raise NotFound(f"package {package_id!r} not found")

    def _find_in_folder(self, folder: Path, package_id: str) -> _Found:
        manifest = self._manifest(folder, package_id)
        main = manifest.get("main")
        if main is not None:
            if not isinstance(main, str) or not main:
                raise InvalidRequest(f"{_MANIFEST} of {package_id!r}: 'main' must be a file name")
            path = self._inside(folder / main, package_id)
            # "main" must name a file of this package, not of a sibling.
            if path is None or not path.is_file() or not path.is_relative_to(folder):
                raise NotFound(f"package {package_id!r}: main file {main!r} not found")
        else:
            path = self._default_text(folder, package_id)
        default_type = "claude-skill" if path.name == _SKILL else _type_of(path)
        return _Found(
            path=path,
            name=_manifest_str(manifest, package_id, "name") or package_id,
            type=(
                _manifest_str(manifest, package_id, "type")
                or _manifest_str(manifest, package_id, "format")
                or default_type
            ),
            version=_manifest_version(manifest, package_id),
        )

    def _default_text(self, folder: Path, package_id: str) -> Path:
        skill = self._inside(folder / _SKILL, package_id)
        if skill is not None and skill.is_file():
            return skill
        for suffix in _TEXT_SUFFIXES:
            for child in sorted(folder.glob(f"*{suffix}")):
                # glob also yields folders and dangling links: keep regular files.
                path = self._inside(child, package_id)
                if path is not None and path.is_file():
                    return path
        raise NotFound(f"package {package_id!r} has no text file")

    def _manifest(self, folder: Path, package_id: str) -> dict[str, Any]:
        path = self._inside(folder / _MANIFEST, package_id)
        if path is None or not path.is_file():
            return {}
        raw = self._read_capped(path, _MAX_MANIFEST_BYTES, package_id)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidRequest(
                f"{_MANIFEST} of {package_id!r} is not valid JSON: {exc}"
            ) from None
        if not isinstance(data, dict):
            raise InvalidRequest(f"{_MANIFEST} of {package_id!r} must be a JSON object")
        return data

    @staticmethod
    def _read_capped(path: Path, limit: int, package_id: str) -> bytes:
        size = path.stat().st_size
        if size > limit:
            raise InvalidRequest(
                f"package {package_id!r}: {path.name} is {size} bytes, over the cap of "
                f"{limit} bytes"
            )
        # The file may grow between stat and read: read one byte past the cap to see.
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
        if len(raw) > limit:
            raise InvalidRequest(
                f"package {package_id!r}: {path.name} is over the cap of {limit} bytes"
            )
        return raw


def _type_of(path: Path) -> str:
    return "cursor-rule" if path.suffix == ".mdc" else "prompt"


def _manifest_str(manifest: dict[str, Any], package_id: str, key: str) -> str | None:
    value = manifest.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{_MANIFEST} of {package_id!r}: {key!r} must be a non-empty string")
    return value


def _manifest_version(manifest: dict[str, Any], package_id: str) -> str | None:
    try:
        return check_version(manifest.get("version"))
    except InvalidRequest as exc:
        raise InvalidRequest(f"{_MANIFEST} of {package_id!r}: {exc.message}") from None
