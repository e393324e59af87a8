"""``on_join`` / ``on_leave``: the application's own functions, each called guarded.

A hook is ``func(topic, key, meta)``, sync or async; its signature is checked once, when it
is registered. Whatever one raises is logged at ERROR (``rooms.presence``), naming the hook
and the topic, and ends there (DESIGN §6): the other hooks, the diffs and the server carry on.
An async hook runs in a task of the server's.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from rooms.presence.bounds import Meta

if TYPE_CHECKING:
    from rooms.server import Server

logger = logging.getLogger("rooms.presence")

H = TypeVar("H", bound=Callable[..., Any])


class Hooks:
    """The hooks of one kind (``kind``: "on_join" or "on_leave")."""

    __slots__ = ("funcs", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.funcs: list[tuple[Callable[..., Any], bool, str]] = []

    def __bool__(self) -> bool:
        return bool(self.funcs)

    def add(self, func: H) -> H:
        name = getattr(func, "__qualname__", repr(func))
        if not callable(func):
            raise TypeError(f"expected a function for {self.kind}, got {func!r}")
        try:
            inspect.signature(func).bind("topic", "key", {})
        except TypeError:
            raise TypeError(
                f"expected {name} to take (topic, key, meta) for {self.kind}, got the "
                f"signature {inspect.signature(func)}"
            ) from None
        is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - async callable objects
        )
        self.funcs.append((func, is_async, name))
        return func

    def call(self, server: Server, topic: str, key: str, meta: Meta) -> None:
        for func, is_async, name in self.funcs:
            what = f"presence {self.kind} hook {name} for topic {topic[:60]!r}"
            if is_async:
                if server.is_running:
                    server.spawn(func, topic, key, dict(meta), what=what)
                continue
            try:
                func(topic, key, dict(meta))
            except Exception:
                logger.exception("%s failed", what)
