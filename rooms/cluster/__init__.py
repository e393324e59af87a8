"""The cluster layer: many rooms processes sharing one broker behave as one server.

- :mod:`~rooms.cluster.node`: membership, heartbeats, requests and their answers.
- :mod:`~rooms.cluster.handlers`: what a process does with each message it receives (the
  work on its own sockets is the server's, through the ``Local`` Protocol defined there).
- :mod:`~rooms.cluster.relay`: requests for a session served by the process that owns it.

The user-facing handles built on it sit above: :class:`rooms.RemoteSocket` (``rooms.remote``)
and :class:`rooms.Emitter` (``rooms.emitter``).
"""

from rooms.cluster.node import Node

__all__ = ["Node"]
