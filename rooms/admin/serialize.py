"""How the Admin UI wants sockets and times written (its ``SerializedSocket``).

A socket of this process and a :class:`~rooms.RemoteSocket` of another one are written
alike; only the Engine.IO facts (``clientId``, ``transport``) come from elsewhere for a
remote one (see ``rooms.admin.Admin``). Everything written here must be JSON the UI can
take: ``socket.data`` that cannot be encoded is shown as ``{}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rooms.handshake import Handshake
from rooms.protocol import socketio as sio

if TYPE_CHECKING:
    from rooms.remote import RemoteSocket
    from rooms.socket import Socket

# Headers that carry credentials: the UI shows every header, and every socket_connected
# crosses the cluster's broker, so their values are not written out.
REDACTED = frozenset({"authorization", "cookie", "proxy-authorization"})
REDACTED_VALUE = "[redacted]"


def iso(at: float) -> str:
    """Epoch seconds as JavaScript's ``Date.toISOString()`` writes them:
    ``2026-11-30T14:07:56.087Z`` (the UI sorts these strings)."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def js_date(at: float) -> str:
    """Epoch seconds as ``String(new Date())`` writes them in UTC (``handshake.time``)."""
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)")


def json_safe(value: Any) -> Any:
    """``value`` if a Socket.IO packet can carry it (binary included), else ``{}``."""
    if value is None:
        return {}
    try:
        sio.dumps(sio.split_binary(value, []))
    except (TypeError, ValueError):
        return {}
    return value


def handshake(shake: Handshake) -> dict[str, Any]:
    """The handshake as the UI shows it (never ``auth``: it may hold credentials)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in shake.headers.raw:
        name = raw_name.decode("latin-1").lower()
        value = REDACTED_VALUE if name in REDACTED else raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    query: dict[str, str | list[str]] = {}
    for key, item in shake.query.multi_items():
        known = query.get(key)
        if known is None:
            query[key] = item
        elif isinstance(known, list):
            known.append(item)
        else:
            query[key] = [known, item]
    return {
        "address": shake.address or "",
        "headers": headers,
        "query": query,
        "issued": round(shake.issued * 1000),
        "secure": shake.secure,
        "time": js_date(shake.issued),
        "url": shake.url,
        "xdomain": "origin" in headers,
    }


def socket_view(socket: Socket | RemoteSocket, client_id: str, transport: str) -> dict[str, Any]:
    """A socket as ``all_sockets`` and ``socket_connected`` carry it: ``client_id`` is its
    Engine.IO session id, ``transport`` ``"polling"`` or ``"websocket"``."""
    rooms = socket.rooms
    return {
        "id": socket.id,
        "clientId": client_id,
        "transport": transport,
        "nsp": socket.nsp.name,
        "data": json_safe(socket.data),
        "handshake": handshake(socket.handshake),
        # Its own room first, as Socket.IO lists it.
        "rooms": [socket.id, *sorted(rooms - {socket.id})] if socket.id in rooms else sorted(rooms),
    }


def local_view(socket: Socket) -> dict[str, Any]:
    """A socket of this process, with its connection's facts."""
    session = socket.session
    return socket_view(socket, session.sid, session.transport)
