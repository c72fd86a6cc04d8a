"""Identifiers: prefixed, URL-safe, sortable by creation within a process.

Ids sort by creation time (milliseconds, then a per-process counter), so
rows created under the same frozen test clock still order the way they were
made; the random tail keeps them unguessable across processes.
"""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_lock = threading.Lock()
_last_ms = 0
_seq = 0


def _b32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """Return a new id such as ``hold_01jd7k…``: time, counter, 80 random bits."""
    global _last_ms, _seq
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            _seq += 1
        else:
            _last_ms, _seq = now_ms, 0
        stamp, seq = _last_ms, _seq
    return f"{prefix}_{_b32(stamp, 10)}{_b32(seq, 4)}{_b32(secrets.randbits(80), 16)}"
