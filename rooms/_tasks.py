"""Every task the server starts is guarded: whatever it raises is logged at ERROR, with what
the task was, and ends there, never in the server's task group (which it would cancel,
stopping every other handler of the process)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
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
