"""Acknowledgements: ack ids, pending acks with timeouts, and broadcast-ack aggregation.

An emit that wants an answer carries an ack id; the peer answers with an ACK packet of the
same id. Ids are per socket and only need to be unique among the acks still pending.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anyio

from rooms.exceptions import AckTimeout, Disconnected

AckCallback = Callable[[list[Any] | BaseException], None]
"""Receives the ACK's arguments, or the exception that ended the wait."""


def ack_value(args: list[Any]) -> Any:
    """What ``emit_with_ack`` returns: nothing, the one argument, or a tuple of them."""
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return tuple(args)


def ack_args(result: Any) -> list[Any]:
    """A handler's return value as ACK arguments (a tuple means several arguments)."""
    if result is None:
        return []
    if isinstance(result, tuple):
        return list(result)
    return [result]


class PendingAcks:
    """The acks one socket waits for, by id.

    Ids come from the namespace's counter (as in the reference server), so a broadcast can
    use one id, and one encoded packet, for every recipient.
    """

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: dict[int, AckCallback] = {}

    def __len__(self) -> int:
        return len(self._callbacks)

    def register(self, ack_id: int, callback: AckCallback) -> None:
        self._callbacks[ack_id] = callback

    def discard(self, ack_id: int) -> None:
        self._callbacks.pop(ack_id, None)

    def resolve(self, ack_id: int, args: list[Any]) -> bool:
        """Deliver an ACK; False if no ack with that id is pending (late or bogus)."""
        callback = self._callbacks.pop(ack_id, None)
        if callback is None:
            return False
        callback(args)
        return True

    def fail_all(self, error: BaseException) -> None:
        callbacks = list(self._callbacks.values())
        self._callbacks.clear()
        for callback in callbacks:
            callback(error)


class AckWaiter:
    """Waits for one ACK; raises :class:`AckTimeout` or :class:`Disconnected`."""

    __slots__ = ("_done", "_result")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._result: list[Any] | BaseException | None = None

    def __call__(self, result: list[Any] | BaseException) -> None:
        if self._result is None:
            self._result = result
            self._done.set()

    async def wait(self, timeout: float | None, what: str) -> list[Any]:
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            await self._done.wait()
        result = self._result
        if result is None:
            raise AckTimeout(f"expected an ack for {what} within {timeout} s, got none")
        if isinstance(result, BaseException):
            raise result
        return result


class AckCollector:
    """Aggregates the ACKs of a broadcast: one list of responses, complete or timed out.

    ``expect`` is raised as recipients are found (locally and, later, on other nodes); the
    wait ends when every expected response arrived or the timeout passed.
    """

    __slots__ = ("_done", "_expected", "_finished_counting", "responses")

    def __init__(self) -> None:
        self.responses: list[Any] = []
        self._expected = 0
        self._finished_counting = False
        self._done = anyio.Event()

    def expect(self, count: int) -> None:
        self._expected += count

    def withdraw(self, count: int) -> None:
        """``count`` expected answers will never come (their process or socket is gone)."""
        self._expected -= count
        self._check()

    @property
    def expected(self) -> int:
        return self._expected

    def callback(self) -> AckCallback:
        def on_ack(result: list[Any] | BaseException) -> None:
            if isinstance(result, BaseException):
                self._expected -= 1  # a recipient that went away will never answer
            else:
                self.responses.append(ack_value(result))
            self._check()

        return on_ack

    def counting_done(self) -> None:
        self._finished_counting = True
        self._check()

    def _check(self) -> None:
        if self._finished_counting and len(self.responses) >= self._expected:
            self._done.set()

    async def wait(self, timeout: float, what: str) -> list[Any]:
        with anyio.move_on_after(timeout):
            await self._done.wait()
        if not self._done.is_set():
            raise AckTimeout(
                f"expected {self._expected} acks for {what} within {timeout} s, "
                f"got {len(self.responses)}",
                list(self.responses),
            )
        return self.responses


def disconnected(sid: str) -> Disconnected:
    return Disconnected(f"socket {sid} disconnected before it acknowledged")
