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


# Two characters per 10 bits: a 150-bit id is 15 table lookups.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(140, -1, -10))


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
    # 50 bits of milliseconds, 20 of counter, 80 random: 30 characters.
    value = (stamp << 100) | ((seq & 0xFFFFF) << 80) | secrets.randbits(80)
    return prefix + "_" + "".join([_PAIRS[(value >> s) & 1023] for s in _SHIFTS])
