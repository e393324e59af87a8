"""Speak to every chat user of a cluster from a process that has no sockets: a worker, a
script, a cron job. It publishes through the broker with :class:`rooms.Emitter`::

    .venv/bin/python -m examples.cluster.announce "Deploy finished" --redis redis://127.0.0.1:6379/0
    .venv/bin/python -m examples.cluster.announce "Lobby closes soon" --room lobby --redis ...
"""

from __future__ import annotations

import argparse

import anyio

import rooms


async def announce(broker: str, text: str, room: str | None) -> None:
    async with rooms.Emitter(broker) as emitter:
        audience = emitter.to(room) if room else emitter
        await audience.emit("announce", {"text": text})


def main() -> None:
    parser = argparse.ArgumentParser(description="Announce to every chat process")
    parser.add_argument("text")
    parser.add_argument("--room", help="only this room")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="the broker URL")
    options = parser.parse_args()
    anyio.run(announce, options.redis, options.text, options.room)


if __name__ == "__main__":
    main()
