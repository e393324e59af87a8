"""Every task the server starts is guarded: whatever it raises is logged at ERROR, with what
the task was, and ends there, never in the server's task group (which it would cancel,
stopping every other handler of the process).

A handler's coroutine need not become a task at all: :func:`step` runs it in the calling
task until it first suspends, which most handlers never do."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from contextvars import Context, copy_context
from typing import Any

import anyio.abc


async def guarded(
    logger: logging.Logger, what: str | None, func: Callable[..., Awaitable[Any]], *args: Any
) -> None:
    """Await ``func(*args)``; log an exception it raises as ``what`` (by default, the
    function's name) failing."""
    try:
        await func(*args)
    except Exception:
        logger.exception("%s failed", what or getattr(func, "__qualname__", func))


def spawn(
    tg: anyio.abc.TaskGroup,
    logger: logging.Logger,
    what: str | None,
    func: Callable[..., Awaitable[Any]],
    *args: Any,
) -> None:
    """Start ``func(*args)`` in ``tg``, guarded."""
    tg.start_soon(guarded, logger, what, func, *args)


async def maybe_await(value: Any) -> Any:
    """``value``, awaited if it is awaitable: what a sync-or-async user callable returned."""
    if inspect.isawaitable(value):
        return await value
    return value


class Suspended:
    """A coroutine that :func:`step` started in the calling task and that suspended there.

    Await it, in that same task and before awaiting anything else, to finish it: what it
    suspended on (an asyncio future, a trio trap) was registered for this task, and its
    cancel scopes were entered in this task. Every later step runs in the coroutine's own
    context, as a task of its own would."""

    __slots__ = ("_context", "_coro", "_first")

    def __init__(self, context: Context, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self._context = context
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        run, coro = self._context.run, self._coro
        value, self._first = self._first, None
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation, thrown at our suspension point
                try:
                    value = run(coro.throw, exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = run(coro.send, sent)
                except StopIteration as stop:
                    return stop.value


def step(coro: Coroutine[Any, Any, Any]) -> Suspended | None:
    """Run ``coro`` in the calling task, in a copy of its context, until it first
    suspends: None if it finished without suspending (what it raised propagates), else
    the :class:`Suspended` coroutine for this task to finish.

    A coroutine that never suspends costs no task, no task switch and no event-loop turn.
    """
    context = copy_context()
    try:
        first = context.run(coro.send, None)
    except StopIteration:
        return None
    return Suspended(context, coro, first)
