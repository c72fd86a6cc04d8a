"""Identifiers: prefixed, URL-safe, sortable by creation within a process.

Ids sort by creation time (milliseconds, then a per-process counter), so
rows created under the same frozen test clock still order the way they were
made; the random tail keeps them unguessable across processes.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
# Each random byte becomes one character by its low 5 bits: 256 is a multiple
# of 32, so every character is uniform and carries 5 bits of entropy.
_BYTE_TO_CHAR = bytes(_ALPHABET.encode()[b & 31] for b in range(256))
# Two characters per 10 bits.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_TAIL_CHARS = 16  # 80 random bits
_TAILS_PER_REFILL = 256

_lock = threading.Lock()
_last_ms = 0
_seq = 0
_stamp = ""
# Random tails are drawn from the OS in bulk and encoded in one C-level pass
# (bytes.translate): per id, randomness and its encoding were most of the cost.
_tails: list[str] = []
# A forked child must never hand out its parent's remaining tails.
os.register_at_fork(after_in_child=_tails.clear)


def _refill() -> None:
    text = os.urandom(_TAIL_CHARS * _TAILS_PER_REFILL).translate(_BYTE_TO_CHAR).decode()
    _tails.extend(text[i : i + _TAIL_CHARS] for i in range(0, len(text), _TAIL_CHARS))


def _encode_ms(ms: int) -> str:
    """50 bits of milliseconds as 10 characters, most significant first."""
    return "".join([_PAIRS[(ms >> shift) & 1023] for shift in (40, 30, 20, 10, 0)])


def new_id(prefix: str) -> str:
    """Return a new id such as ``hold_01jd7k…``: time, counter, 80 random bits.

    30 characters after the prefix: 10 for the millisecond, 4 for a counter
    within it, 16 random.
    """
    global _last_ms, _seq, _stamp
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            _seq += 1
        else:
            _last_ms, _seq, _stamp = now_ms, 0, _encode_ms(now_ms)
        stamp, seq = _stamp, _seq & 0xFFFFF
        if not _tails:
            _refill()
        tail = _tails.pop()
    return f"{prefix}_{stamp}{_PAIRS[seq >> 10]}{_PAIRS[seq & 1023]}{tail}"
