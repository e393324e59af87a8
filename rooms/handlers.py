"""Handlers: a user's function, its signature inspected once, called the cheap way."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from typing import Any

from rooms.exceptions import ProtocolError

logger = logging.getLogger("rooms")

Then = Callable[[Any, bool], Awaitable[Any] | None]
"""What follows a handler: ``then(result, ok)``; ``ok`` is False if the handler raised. For
an async handler it may return an awaitable (awaited in the handler's task)."""
Start = Callable[[Coroutine[Any, Any, None]], None]
"""Runs a handler's coroutine: in a task of the server's, or inline in the task reading
the connection the event came from (:meth:`rooms.engine.session.Session.start`)."""


class Handler:
    """A registered handler: ``func(socket, *args)``, sync or async.

    Extra arguments from the peer are dropped (as JavaScript ignores them); too few is a
    :class:`ProtocolError` naming what was expected, so a bad client cannot crash a handler
    with a ``TypeError``.
    """

    __slots__ = ("func", "is_async", "max_args", "min_args", "name")

    def __init__(self, func: Callable[..., Any], leading: int = 1) -> None:
        self.func = func
        self.name = getattr(func, "__qualname__", repr(func))
        self.is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - async callable objects
        )
        signature = inspect.signature(func)
        params = list(signature.parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            self.max_args: int | None = None
        else:
            self.max_args = max(len(positional) - leading, 0)
        required = [p for p in positional if p.default is p.empty]
        self.min_args = max(len(required) - leading, 0)
        if len(positional) < leading and self.max_args is not None:
            raise TypeError(
                f"expected {self.name} to accept at least {leading} positional argument(s) "
                f"(the socket first), got the signature {signature}"
            )
        keyword_only = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
        if keyword_only:
            # Nothing on the wire can fill them: every call would fail. Say so now.
            raise TypeError(
                f"expected {self.name} to take its arguments positionally, got required "
                f"keyword-only parameter(s) {', '.join(keyword_only)} in {signature}"
            )

    def args_for(self, args: list[Any]) -> list[Any]:
        if len(args) < self.min_args:
            raise ProtocolError(
                f"expected at least {self.min_args} argument(s) for {self.name}, got {len(args)}"
            )
        if self.max_args is not None and len(args) > self.max_args:
            return args[: self.max_args]
        return args

    def run(
        self,
        start: Start,
        args: Sequence[Any],
        then: Then | None,
        what: tuple[Any, ...],
        span: AbstractContextManager[Any] | None = None,
    ) -> None:
        """Call the handler with ``args``: a sync one here and now, an async one through
        ``start``. ``then(result, ok)`` follows it either way (for an async handler it may
        return an awaitable; a sync handler's must not). Whatever the handler or
        ``then`` raises is logged at ERROR as ``what`` (a log template and its arguments)
        failing, and ends there. The handler runs inside ``span`` if there is one (a
        tracing span: it sees what the handler raises)."""
        if self.is_async:
            start(self._run_async(args, then, what, span))
            return
        ok, result = True, None
        try:
            if span is None:
                result = self.func(*args)
            else:
                with span:
                    result = self.func(*args)
        except Exception:
            ok = False
            logger.exception(what[0] + " failed", *what[1:])
        if then is not None:
            try:
                then(result, ok)
            except Exception:
                logger.exception(what[0] + " failed", *what[1:])

    async def _run_async(
        self,
        args: Sequence[Any],
        then: Then | None,
        what: tuple[Any, ...],
        span: AbstractContextManager[Any] | None,
    ) -> None:
        ok, result = True, None
        try:
            if span is None:
                result = await self.func(*args)
            else:
                with span:
                    result = await self.func(*args)
        except Exception:
            ok = False
            logger.exception(what[0] + " failed", *what[1:])
        if then is not None:
            try:
                pending = then(result, ok)
                if pending is not None:
                    await pending
            except Exception:
                logger.exception(what[0] + " failed", *what[1:])
