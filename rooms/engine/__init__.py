"""Engine.IO v4 over ASGI: sessions, long-polling, websocket, heartbeat and upgrade."""

from rooms.engine.server import EngineServer
from rooms.engine.session import Session, State

__all__ = ["EngineServer", "Session", "State"]
