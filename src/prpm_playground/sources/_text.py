"""Checks shared by every package source: ids, versions, and the package text.

Every source runs the text it found through :func:`normalise`, so a package
reads the same whether it came from memory, a folder or the registry, and the
same characters are flagged wherever it came from.
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import InvalidRequest

__all__ = [
    "DEFAULT_MAX_PACKAGE_BYTES",
    "MAX_PACKAGE_ID_LENGTH",
    "MAX_VERSION_LENGTH",
    "check_package_id",
    "check_version",
    "normalise",
]

DEFAULT_MAX_PACKAGE_BYTES = 100_000
"""Default cap on a package's text, in UTF-8 bytes (``Limits.max_package_bytes``)."""

MAX_PACKAGE_ID_LENGTH = 214
"""Longest package id, as npm allows."""

MAX_VERSION_LENGTH = 64
"""Longest version string."""

# npm-like: lower case, optionally scoped. Neither "/" (beyond the scope's), ":" nor
# "\" can match, so no id is a URL or a path with more than two segments.
_PACKAGE_ID = re.compile(r"(?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+-]*")

# Characters that reorder what a reader sees (the "Trojan Source" family).
_BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
_ALLOWED_CONTROLS = frozenset("\n\t")
# In ASCII text only C0 controls and DEL can be flagged; a regex finds them fast.
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _show(value: str, limit: int = 40) -> str:
    # Echo only a prefix: an id may be arbitrarily long and ends up in logs.
    return repr(value if len(value) <= limit else value[:limit] + "…")


def check_package_id(value: object) -> str:
    """Return ``value`` if it is a well-formed package id.

    Ids are npm-like: 1 to 214 characters of lower-case letters, digits, ``.``,
    ``_`` and ``-``, starting with a letter or digit, optionally scoped as
    ``@scope/name``. They can never be URLs or escape a folder: ``..``, ``:``,
    ``\\`` and any ``/`` other than the scope separator are refused.

    Raises:
        InvalidRequest: ``value`` is not a well-formed package id.
    """
    if not isinstance(value, str):
        raise InvalidRequest(f"package id must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_PACKAGE_ID_LENGTH:
        raise InvalidRequest(
            f"package id must be 1 to {MAX_PACKAGE_ID_LENGTH} characters, got {len(value)}"
        )
    if ".." in value or _PACKAGE_ID.fullmatch(value) is None:
        raise InvalidRequest(
            f"package id {_show(value)} is malformed: use lower-case letters, digits, "
            "'.', '_' and '-', optionally scoped as '@scope/name'"
        )
    return value


def check_version(value: object) -> str | None:
    """Return ``value`` if it is None or a well-formed version string.

    Versions are 1 to 64 characters of letters, digits, ``.``, ``+`` and ``-``,
    starting with a letter or digit (semver and its relatives fit).

    Raises:
        InvalidRequest: ``value`` is neither None nor a well-formed version.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"version must be a string or None, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_VERSION_LENGTH:
        raise InvalidRequest(
            f"version must be 1 to {MAX_VERSION_LENGTH} characters, got {len(value)}"
        )
    if _VERSION.fullmatch(value) is None:
        raise InvalidRequest(
            f"version {_show(value)} is malformed: use letters, digits, '.', '+' and '-'"
        )
    return value


def _check_size(text: str, max_bytes: int) -> None:
    # A character is at least one UTF-8 byte, so a long str is refused without
    # encoding all of it.
    if len(text) > max_bytes:
        raise InvalidRequest(
            f"package text is at least {len(text)} bytes, over the cap of {max_bytes} bytes"
        )
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest("package text contains unpaired surrogates") from None
    if size > max_bytes:
        raise InvalidRequest(f"package text is {size} bytes, over the cap of {max_bytes} bytes")


def _flag(char: str) -> str | None:
    if char in _BIDI_CONTROLS:
        return "bidirectional control"
    if char in _ALLOWED_CONTROLS:
        return None
    # Cf covers the zero-width characters, U+2060, U+FEFF and the tag
    # characters; Cc the C0/C1 controls.
    if unicodedata.category(char) in ("Cf", "Cc"):
        return "invisible"
    return None


def _warnings(text: str) -> tuple[str, ...]:
    # In ASCII only controls can be flagged; otherwise classify each distinct
    # character once, as even long texts hold few of them.
    candidates = set(_ASCII_CONTROLS.findall(text)) if text.isascii() else set(text)
    found: list[tuple[str, str, int]] = []
    for char in candidates:
        kind = _flag(char)
        if kind is not None:
            found.append((char, kind, text.count(char)))
    # Bidirectional controls first (the more dangerous), then by code point.
    found.sort(key=lambda item: (item[1] != "bidirectional control", ord(item[0])))
    return tuple(
        f"{count} {kind} character{'s' if count != 1 else ''} (U+{ord(char):04X}) found"
        for char, kind, count in found
    )


def normalise(text: str, *, max_bytes: int) -> tuple[str, tuple[str, ...]]:
    """Normalise a package's text and report characters a reader cannot see.

    The text is checked against the cap as given and again once normalised:
    a leading byte order mark is removed, line endings become ``\\n``, the text
    is put in Unicode NFC and whitespace at its end is removed. Bidirectional
    controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C) and
    invisible characters (zero-width characters, U+2060, U+FEFF inside the
    text, other format and control characters except ``\\n`` and ``\\t``) are
    kept but reported, one warning per code point, e.g.
    ``"2 bidirectional control characters (U+202E) found"``.

    Args:
        text: The text as the source found it.
        max_bytes: The largest text accepted, in UTF-8 bytes.

    Returns:
        The normalised text and the warnings about it.

    Raises:
        InvalidRequest: The text is over ``max_bytes`` or empty once normalised.
    """
    _check_size(text, max_bytes)
    text = text.removeprefix("\ufeff")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text).rstrip()
    # NFC may lengthen a text (a few compositions are excluded), so check again.
    _check_size(text, max_bytes)
    if not text:
        raise InvalidRequest("package text is empty")
    return text, _warnings(text)
