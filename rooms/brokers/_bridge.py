"""Run asyncio-only client code from any anyio backend.

`redis.asyncio` only runs on an asyncio event loop. Under asyncio we call it directly; under
trio we host it on an asyncio loop in a thread of its own (an anyio blocking portal) and
cross over once per call. Callers batch their work so a crossing costs one thread hop per
batch, not per message.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread

T = TypeVar("T")

# Calls waiting on the hosting thread at once: a reader, a writer, (un)subscribes, commands.
_CROSSINGS = 64


class Host(Protocol):
    """Where the asyncio-only code runs. A call is not abandoned when its caller is
    cancelled (under trio the caller waits for it to end), so calls must not wait long."""

    async def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T: ...

    async def start(self, func: Callable[..., Coroutine[Any, Any, Any]]) -> None:
        """Start ``func(task_status=...)`` in the background; return once it says started.
        It is cancelled when the host closes."""


class _Direct:
    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg

    async def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await func(*args)

    async def start(self, func: Callable[..., Coroutine[Any, Any, Any]]) -> None:
        await self._tg.start(func)


class _Portal:
    def __init__(self, portal: anyio.from_thread.BlockingPortal) -> None:
        self._portal = portal
        self._limiter = anyio.CapacityLimiter(_CROSSINGS)

    async def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        # Not abandoned on cancel: a cancelled caller waits for the call to end over there
        # (a thread left behind would report to a loop that may be gone). Callers keep
        # their calls short for that reason: every wait over there is bounded.
        return await anyio.to_thread.run_sync(
            functools.partial(self._portal.call, func, *args), limiter=self._limiter
        )

    async def start(self, func: Callable[..., Coroutine[Any, Any, Any]]) -> None:
        await anyio.to_thread.run_sync(self._portal.start_task, func, limiter=self._limiter)


def running_on_asyncio() -> bool:
    """True unless the current task is trio's (the only other anyio backend)."""
    trio = sys.modules.get("trio")
    if trio is None:
        return True
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return True
    return False


@asynccontextmanager
async def asyncio_host() -> AsyncIterator[Host]:
    """A host for asyncio-only code, closed (its background tasks cancelled) on exit."""
    if running_on_asyncio():
        async with anyio.create_task_group() as tg:
            yield _Direct(tg)
            tg.cancel_scope.cancel()
        return
    portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
    portal = await anyio.to_thread.run_sync(portal_cm.__enter__)
    try:
        yield _Portal(portal)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(portal.call, portal.stop, True)
            await anyio.to_thread.run_sync(portal_cm.__exit__, None, None, None)
