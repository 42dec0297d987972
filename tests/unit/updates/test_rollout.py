"""The halt rule and rollout decisions, as pure functions."""

from __future__ import annotations

import uuid

import pytest

from opensphere.updates.rollout import Rollout, rollout_bucket, should_halt, takes_update


@pytest.mark.parametrize(
    ("installed", "failed", "threshold", "min_reports", "halt"),
    [
        (0, 0, 20, 1, False),
        (9, 0, 20, 10, False),
        (1, 8, 20, 10, False),  # 9 outcomes: too few to judge
        (8, 2, 20, 10, False),  # exactly 20 %: not past it
        (7, 3, 20, 10, True),
        (0, 1, 1, 1, True),
        (99, 1, 1, 100, False),
        (98, 2, 1, 100, True),
    ],
)
def test_should_halt(
    installed: int, failed: int, threshold: int, min_reports: int, halt: bool
) -> None:
    assert (
        should_halt(
            installed=installed, failed=failed, threshold=threshold, min_reports=min_reports
        )
        is halt
    )


def test_a_paused_rollout_takes_no_new_device() -> None:
    deployment = uuid.uuid4()
    assert takes_update(Rollout(deployment, 100, paused=False), "a" * 128)
    assert not takes_update(Rollout(deployment, 100, paused=True), "a" * 128)


def test_buckets_are_stable_and_spread() -> None:
    deployment = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    assert rollout_bucket(deployment, "a" * 128) == rollout_bucket(deployment, "a" * 128)
    assert 0 <= rollout_bucket(deployment, "b" * 128) < 10_000


def test_custom_round_trips_and_refuses_garbage() -> None:
    rollout = Rollout(uuid.uuid4(), 25, paused=True)
    assert Rollout.from_custom({"rollout": rollout.custom()}) == rollout
    assert Rollout.from_custom({"image_id": "x"}) is None
    with pytest.raises(ValueError, match="malformed"):
        Rollout.from_custom({"rollout": {"percentage": "x"}})
    with pytest.raises(ValueError, match="between 1 and 100"):
        Rollout(uuid.uuid4(), 0, paused=False)
