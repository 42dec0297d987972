"""In-process power cuts: the N-th durable step of the armed thread, and only that thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from opensphere.sim.powercut import DurableSteps, PowerCut


def _three_steps(folder: Path) -> None:
    (folder / "a").mkdir()
    (folder / "a").rename(folder / "b")
    (folder / "b").rmdir()


def test_the_armed_step_and_every_later_one_cut_the_power(tmp_path: Path) -> None:
    original = os.rename
    with DurableSteps(skip_fsync=False) as steps:
        with steps.cut_at(2) as armed, pytest.raises(PowerCut, match="step 2 \\(rename\\)"):
            _three_steps(tmp_path)
        assert (armed.fired, armed.steps) == (True, 2)
        assert (tmp_path / "a").is_dir()  # the rename never happened
        with steps.cut_at(1), pytest.raises(PowerCut):
            (tmp_path / "a").rmdir()
        _three_steps(tmp_path / "a")  # disarmed: the power is back
    assert os.rename is original  # unwrapped again


def test_a_cut_beyond_the_last_step_does_not_fire(tmp_path: Path) -> None:
    with DurableSteps(skip_fsync=False) as steps, steps.cut_at(4) as armed:
        _three_steps(tmp_path)
    assert (armed.fired, armed.steps) == (False, 3)


def test_other_threads_keep_their_power(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            _three_steps(tmp_path / "other")
        except BaseException as exc:
            errors.append(exc)

    (tmp_path / "other").mkdir()
    with DurableSteps(skip_fsync=False) as steps, steps.cut_at(1):
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert errors == []
    assert not (tmp_path / "other" / "b").exists()


def test_skipped_fsyncs_still_count_as_steps(tmp_path: Path) -> None:
    with (tmp_path / "f").open("wb") as file, DurableSteps(skip_fsync=True) as steps:
        with steps.cut_at(2) as armed:
            os.fsync(file.fileno())
        assert (armed.steps, armed.fired) == (1, False)
        with pytest.raises(RuntimeError, match="already"):
            steps.__enter__()
