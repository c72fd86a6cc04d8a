import os
import re

from prpm_playground._ids import new_id


def test_ids_sort_in_creation_order_and_are_unique() -> None:
    ids = [new_id("grt") for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_id_shape() -> None:
    assert re.fullmatch(r"hold_[0-9a-hjkmnp-tv-z]{30}", new_id("hold"))


def test_tails_are_random_and_fresh_after_fork() -> None:
    tails = {new_id("x")[-16:] for _ in range(2000)}
    assert len(tails) == 2000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id must not reuse the parent's next tail
        os.write(write, new_id("x")[-16:].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 16).decode()
    assert child != new_id("x")[-16:]
