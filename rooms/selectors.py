"""The broadcast selectors, defined (and documented) once.

``to`` / ``in_`` / ``except_`` / ``volatile`` / ``local`` / ``timeout`` narrow who receives;
``emit`` / ``emit_with_ack`` / ``fetch_sockets`` / ``sockets_join`` / ``sockets_leave`` /
``disconnect_sockets`` act on the selection. :class:`~rooms.Server` and
:class:`~rooms.Namespace` (every socket of a namespace), their
:class:`~rooms.BroadcastOperator`, and :class:`~rooms.Emitter` with its operator all
speak this one vocabulary, through the mixins here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from rooms.protocol.cluster import ALL, BroadcastOptions

if TYPE_CHECKING:
    from rooms.remote import RemoteSocket
    from rooms.socket import Socket


def room_set(*rooms: str | Iterable[str]) -> frozenset[str]:
    """``"a"``, ``"a", "b"`` or ``["a", "b"]`` as a frozenset of room names."""
    names: set[str] = set()
    for item in rooms:
        if isinstance(item, str):
            names.add(item)
        else:
            for name in item:
                if not isinstance(name, str):
                    raise TypeError(f"expected room names as str, got {name!r}")
                names.add(name)
    return frozenset(names)


class Selection(Protocol):
    """What every selection can do, wherever it runs."""

    async def emit(self, event: str, *args: Any) -> None: ...

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None: ...

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None: ...

    async def disconnect_sockets(self, close: bool = False) -> None: ...


class ServerSelection(Selection, Protocol):
    """What a server's selection can do besides: wait for answers."""

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]: ...

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]: ...


Op = TypeVar("Op", bound=Selection)
SOp = TypeVar("SOp", bound=ServerSelection)


class Chain(Generic[Op]):
    """Selectors that narrow who receives. Each returns a new selection; none changes
    the one it is called on."""

    __slots__ = ()

    def _options(self) -> BroadcastOptions:
        """The selection so far (everyone, unless this is an operator)."""
        return ALL

    def _chain(self, opts: BroadcastOptions | None = None, timeout: float | None = None) -> Op:
        """The selection with these options (None: unchanged)."""
        raise NotImplementedError

    def to(self, *rooms: str | Iterable[str]) -> Op:
        """Select the sockets in any of ``rooms`` (a union with rooms already chosen):
        ``to("a", "b")``, ``to(["a", "b"])``."""
        opts = self._options()
        return self._chain(dataclasses.replace(opts, rooms=opts.rooms | room_set(*rooms)))

    def in_(self, *rooms: str | Iterable[str]) -> Op:
        """The same as :meth:`to`."""
        return self.to(*rooms)

    def except_(self, *rooms: str | Iterable[str]) -> Op:
        """Leave out the sockets in any of ``rooms``."""
        opts = self._options()
        return self._chain(
            dataclasses.replace(opts, except_rooms=opts.except_rooms | room_set(*rooms))
        )

    @property
    def volatile(self) -> Op:
        """Emits may be dropped for clients that are not keeping up (no recovery log)."""
        return self._chain(dataclasses.replace(self._options(), volatile=True))


class ServerChain(Chain[SOp]):
    """The selectors of a running server, which also has sockets of its own and waits."""

    __slots__ = ()

    @property
    def local(self) -> SOp:
        """Only sockets of this process, even with a cluster broker."""
        return self._chain(dataclasses.replace(self._options(), local=True))

    def timeout(self, seconds: float) -> SOp:
        """How long ``emit_with_ack`` waits (and, in a cluster, ``fetch_sockets`` and the
        room operations wait for the other processes)."""
        return self._chain(timeout=seconds)


class Acts(Generic[Op]):
    """The actions, on every socket (of the namespace), for what selects them all."""

    __slots__ = ()

    def _everyone(self) -> Op:
        raise NotImplementedError

    async def emit(self, event: str, *args: Any) -> None:
        """Send ``event`` with ``args`` to every selected socket, on every process; encoded
        once. Bytes anywhere travel as binary attachments."""
        await self._everyone().emit(event, *args)

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        """Make the selected sockets join ``rooms``, on every process. A server returns once
        every live process has (else :class:`~rooms.ClusterTimeout`, past its
        ``request_timeout``); an :class:`~rooms.Emitter` once it has published it."""
        await self._everyone().sockets_join(*rooms)

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        """Make the selected sockets leave ``rooms``, on every process (returning as
        :meth:`sockets_join` does)."""
        await self._everyone().sockets_leave(*rooms)

    async def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the selected sockets, on every process (``close=True`` drops their
        whole connection; returning as :meth:`sockets_join` does)."""
        await self._everyone().disconnect_sockets(close)


class ServerActs(Acts[SOp]):
    """The actions that wait for answers, for what selects every socket."""

    __slots__ = ()

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Send ``event`` to every selected socket and collect their acks, on every process
        (raises :class:`~rooms.AckTimeout` with the answers that came, past the timeout)."""
        return await self._everyone().emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]:
        """The selected sockets: this process's as :class:`~rooms.Socket`, the other
        processes' as :class:`~rooms.RemoteSocket` handles."""
        return await self._everyone().fetch_sockets()
