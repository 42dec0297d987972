"""A lane's answer runs at once up to its first wait; a task finishes the rest (`_Rest`)
exactly as if the task had run the coroutine from the start."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from opensphere.service.fast_lane import _Rest


def _start(coroutine: Any) -> _Rest:
    """Run `coroutine` up to its first wait, as the lane does."""
    return _Rest(coroutine, coroutine.send(None))


def test_a_coroutine_that_never_waits_finishes_in_its_first_step() -> None:
    async def answer() -> bytes:
        return b"at once"

    with pytest.raises(StopIteration) as finished:
        answer().send(None)
    assert finished.value.value == b"at once"


def test_the_rest_gets_what_it_waited_for_and_returns_its_answer() -> None:
    steps: list[str] = []

    async def answer(waited: asyncio.Future[str]) -> bytes:
        steps.append("before")
        value = await waited
        steps.append(value)
        await asyncio.sleep(0)
        return b"done after " + value.encode()

    async def main() -> bytes:
        waited: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        rest = _start(answer(waited))
        assert steps == ["before"]
        task = asyncio.ensure_future(_finish(rest))
        await asyncio.sleep(0)
        assert not task.done()
        waited.set_result("the wait")
        return await task

    assert asyncio.run(main()) == b"done after the wait"
    assert steps == ["before", "the wait"]


def test_a_failure_after_the_wait_reaches_the_task() -> None:
    async def answer(waited: asyncio.Future[None]) -> bytes:
        await waited
        raise ValueError("refused after the wait")

    async def main() -> None:
        waited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(_finish(_start(answer(waited))))
        waited.set_result(None)
        await task

    with pytest.raises(ValueError, match="refused after the wait"):
        asyncio.run(main())


def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    seen: list[str] = []

    async def answer(waited: asyncio.Future[None]) -> bytes:
        try:
            await waited
        except asyncio.CancelledError:
            seen.append("cancelled while waiting")
            raise
        return b"never"

    async def main() -> None:
        waited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(_finish(_start(answer(waited))))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["cancelled while waiting"]


async def _finish(rest: _Rest) -> bytes:
    return await rest
