"""ASGI lifespan: rooms' own lifecycle first, the wrapped app's beside it.

rooms answers the ASGI server itself, so its lifecycle never depends on the wrapped app:

- startup: the server starts (heartbeat, handler tasks, the cluster node); if that fails,
  ``lifespan.startup.failed`` carries the reason, so the ASGI server exits non-zero in every
  lifespan mode (uvicorn's default "auto" included, which would otherwise take an exception
  for "lifespan unsupported" and serve a zombie). Then the app's own lifespan runs: its
  ``startup.failed`` is passed on; an app that raises or returns without answering does not
  speak lifespan, and rooms carries on without it.
- shutdown: rooms closes its connections first ("server shutting down"), then the app's
  shutdown runs, then rooms stops; ``shutdown.complete`` (or the app's ``shutdown.failed``)
  goes out last.
"""

from __future__ import annotations

import logging
import math
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Protocol

import anyio
import anyio.abc

from rooms._types import AnyASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("rooms")


class Runnable(Protocol):
    """What lifespan starts and stops (a :class:`rooms.Server` or a bare engine)."""

    def running(self) -> AbstractAsyncContextManager[Any]: ...

    async def shutdown(self) -> None: ...


async def serve_lifespan(
    server: Runnable, app: AnyASGIApp | None, scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer an ASGI lifespan scope for ``server`` and (if given) the wrapped ``app``."""
    message = await receive()
    if message["type"] != "lifespan.startup":
        return
    failure: str | None = None
    async with AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(server.running())
        except Exception as exc:
            logger.exception("rooms could not start")
            await send({"type": "lifespan.startup.failed", "message": f"rooms: {exc!r}"})
            return
        wrapped = _AppLifespan(app, scope) if app is not None else None
        if wrapped is not None:
            stack.callback(wrapped.close)  # after the task group below has ended
        tg = await stack.enter_async_context(anyio.create_task_group())
        if wrapped is not None:
            failure = await wrapped.start(tg)
            if failure is not None:
                tg.cancel_scope.cancel()
                await send({"type": "lifespan.startup.failed", "message": failure})
                return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown (anything else ends the lifespan all the same)
        await server.shutdown()
        if wrapped is not None:
            failure = await wrapped.stop()
        # Leaving the stack stops the server (its broker says goodbye) before we answer.
    if failure is not None:
        await send({"type": "lifespan.shutdown.failed", "message": failure})
    else:
        await send({"type": "lifespan.shutdown.complete"})


class _AppLifespan:
    """The wrapped app's lifespan, run in a task of its own and spoken to through streams."""

    def __init__(self, app: AnyASGIApp, scope: Scope) -> None:
        self.app = app
        self.scope = scope
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._app_outbox, self._from_app = anyio.create_memory_object_stream[Message](math.inf)
        self._speaks = False

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self._app_inbox.receive, self._app_outbox.send)
        except Exception as exc:
            if self._speaks:
                logger.exception("the wrapped app's lifespan failed")
            else:  # as the ASGI servers do: an app that raises here does not speak lifespan
                logger.debug("the wrapped app does not speak lifespan (%r)", exc)
        finally:
            self._app_outbox.close()

    async def start(self, tg: anyio.abc.TaskGroup) -> str | None:
        """Run the app's startup; its failure message, or None."""
        tg.start_soon(self._run)
        await self._to_app.send({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply is None:
            return None  # returned or raised without answering: no lifespan of its own
        self._speaks = True
        if reply["type"] == "lifespan.startup.failed":
            return str(reply.get("message", "the wrapped app's startup failed"))
        return None

    async def stop(self) -> str | None:
        """Run the app's shutdown (if its lifespan still runs); its failure message."""
        if not self._speaks:
            return None
        await self._to_app.send({"type": "lifespan.shutdown"})
        reply = await self._reply()
        if reply is not None and reply["type"] == "lifespan.shutdown.failed":
            return str(reply.get("message", "the wrapped app's shutdown failed"))
        return None

    def close(self) -> None:
        for stream in (self._to_app, self._app_inbox, self._app_outbox, self._from_app):
            stream.close()

    async def _reply(self) -> Message | None:
        try:
            return await self._from_app.receive()
        except anyio.EndOfStream:
            return None
