"""Every error rooms raises derives from :class:`RoomsError`."""

from __future__ import annotations

from typing import Any


class RoomsError(Exception):
    """Root of every exception raised by rooms."""


class ProtocolError(RoomsError, ValueError):
    """A peer sent bytes that do not follow Engine.IO v4 or Socket.IO v5.

    The message always says what was expected and what arrived.
    """


class PayloadTooLarge(ProtocolError):
    """A payload exceeded the configured ``max_payload``."""


class ConnectionRefused(RoomsError):
    """Raise from a connect handler or middleware to refuse a Socket.IO connection.

    The client receives a CONNECT_ERROR packet ``{"message": message, "data": data}``.
    """

    def __init__(self, message: str = "Connection refused", data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_payload(self) -> dict[str, Any]:
        """The CONNECT_ERROR packet's data: ``{"message": ..., "data": ...}``."""
        payload: dict[str, Any] = {"message": self.message}
        if self.data is not None:
            payload["data"] = self.data
        return payload


class AckTimeout(RoomsError, TimeoutError):
    """The peer did not acknowledge an emit within the timeout.

    For a broadcast, ``responses`` holds the acks that did arrive in time.
    """

    def __init__(self, message: str, responses: list[Any] | None = None) -> None:
        super().__init__(message)
        self.responses = responses if responses is not None else []


class Disconnected(RoomsError, ConnectionError):
    """The socket or session is closed; nothing more can be sent on it."""


class BrokerError(RoomsError):
    """A broker could not move a message between processes."""


class ClusterTimeout(BrokerError, TimeoutError):
    """Other processes did not all answer a cluster request (``fetch_sockets``, ...) in time.

    ``responses`` holds what is known all the same: for ``fetch_sockets``, the sockets found
    (this process's :class:`~rooms.Socket` objects and a :class:`~rooms.RemoteSocket` for
    each socket of the processes that answered); for ``sockets_join``, ``sockets_leave``
    and ``disconnect_sockets``, the uids of the processes that applied it (this one first).
    """

    def __init__(self, message: str, responses: list[Any] | None = None) -> None:
        super().__init__(message)
        self.responses = responses if responses is not None else []
