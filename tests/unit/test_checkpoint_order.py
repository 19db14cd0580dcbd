from __future__ import annotations

import pytest

from projections.checkpoints import checkpoint_advances


@pytest.mark.parametrize(
    ("new", "stored", "advances"),
    [
        ("1", None, True),
        ('{"0":5}', None, True),
        ("10", "9", True),
        ("9", "10", False),
        ("10", "10", False),
        ("100", "99", True),  # numbers, not text
        ('{"0":5,"1":7}', '{"0":5,"1":6}', True),
        ('{"0":5,"1":6}', '{"0":5,"1":6}', False),
        ('{"0":4,"1":9}', '{"0":5,"1":6}', False),  # one partition behind
        ('{"0":5,"1":6,"2":1}', '{"0":5,"1":6}', True),  # a partition appeared
        ('{"0":5}', '{"0":5,"1":6}', False),  # a partition's offset missing
        ("opaque-b", "opaque-a", True),
        ("opaque-a", "opaque-a", False),
    ],
)
def test_checkpoint_order(new: str, stored: str | None, advances: bool) -> None:
    assert checkpoint_advances(new, stored) is advances
