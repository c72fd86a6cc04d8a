import re

from prpm_playground._ids import new_id


def test_ids_sort_in_creation_order_and_are_unique() -> None:
    ids = [new_id("grt") for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_id_shape() -> None:
    assert re.fullmatch(r"hold_[0-9a-hjkmnp-tv-z]{30}", new_id("hold"))
