"""The cluster layer: many rooms processes sharing one broker behave as one server.

- :mod:`~rooms.cluster.node`: membership, heartbeats, requests and their answers.
- :mod:`~rooms.cluster.handlers`: what a process does with each message it receives.
- :mod:`~rooms.cluster.remote`: handles on sockets connected to other processes.
"""

from rooms.cluster.node import Node
from rooms.cluster.remote import RemoteSocket

__all__ = ["Node", "RemoteSocket"]
