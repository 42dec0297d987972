"""Power cuts inside one process: the N-th durable file-system step of one device raises.

tests/integration/test_power_cut.py cuts a forked child with SIGKILL; a simulator of thousands
of devices cannot fork for each, so it cuts in-process instead. `DurableSteps` wraps the file
system's durable steps (`os.fsync`, `rename`, `replace`, `unlink`, `mkdir`, `rmdir`) once for
the whole run; a thread arms a cut with `cut_at(n)` around one device's work, and that
thread's n-th step and every step after it raise `PowerCut` (the power stays off). Other
threads are not affected. The caller then drops everything the device held in memory and
powers it on again from its folder, as after a real cut.

Device fsyncs can be skipped (`skip_fsync`): an in-process cut never loses the page cache, so
fsync gives the simulation no safety it could observe, while 10,000 emulated flashes on one
shared disk would only measure that disk. A skipped fsync still counts as a step.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

STEPS: Final = ("fsync", "rename", "replace", "unlink", "mkdir", "rmdir")


class PowerCut(BaseException):
    """The power went off at a durable step; nothing the device does may catch it."""


@dataclass
class ArmedCut:
    """One armed cut: the step it fires at, the steps seen, whether it fired."""

    at_step: int
    steps: int = 0
    fired: bool = False


class DurableSteps:
    """Wraps the durable steps of `os` while entered; see the module docstring."""

    def __init__(self, *, skip_fsync: bool) -> None:
        self.skip_fsync = skip_fsync
        self._local = threading.local()
        self._originals: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> DurableSteps:
        if self._originals:
            raise RuntimeError("the durable steps are wrapped already")
        for name in STEPS:
            original = getattr(os, name)
            self._originals[name] = original
            setattr(os, name, self._wrap(name, original))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for name, original in self._originals.items():
            setattr(os, name, original)
        self._originals.clear()

    @contextmanager
    def cut_at(self, step: int) -> Iterator[ArmedCut]:
        """Arm a cut at this thread's `step`-th durable step until the block ends."""
        if step < 1:
            raise ValueError("steps count from 1")
        armed = ArmedCut(at_step=step)
        self._local.armed = armed
        try:
            yield armed
        finally:
            self._local.armed = None

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        skip = name == "fsync" and self.skip_fsync

        def step(*args: Any, **kwargs: Any) -> Any:
            armed: ArmedCut | None = getattr(self._local, "armed", None)
            if armed is not None:
                armed.steps += 1
                if armed.fired or armed.steps >= armed.at_step:
                    armed.fired = True
                    raise PowerCut(f"power cut at durable step {armed.steps} ({name})")
            return None if skip else original(*args, **kwargs)

        return step
