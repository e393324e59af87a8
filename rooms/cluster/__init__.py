"""The cluster layer: many rooms processes sharing one broker behave as one server.

- :mod:`~rooms.cluster.node`: membership, heartbeats, requests and their answers.
- :mod:`~rooms.cluster.handlers`: what a process does with each message it receives.
- :mod:`~rooms.cluster.remote`: handles on sockets connected to other processes.
- :mod:`~rooms.cluster.relay`: requests for a session served by the process that owns it.
- :mod:`~rooms.cluster.emitter`: publishing from processes with no sockets.
"""

from rooms.cluster.node import Node
from rooms.cluster.remote import RemoteSocket

__all__ = ["Node", "RemoteSocket"]
