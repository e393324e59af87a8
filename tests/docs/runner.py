"""Run one documentation block as a script on one anyio backend: ``runner.py FILE BACKEND``.

The block runs as ``python FILE`` would run it (``__name__ == "__main__"``, its own folder
first on ``sys.path``), except that ``anyio.run`` runs on BACKEND, so that a block written
for its readers as ``anyio.run(main)`` is tried on asyncio and on trio alike. A block that
defines an ASGI ``app`` and runs nothing itself then has that app's lifespan started and
stopped: the app must be able to start.
"""

from __future__ import annotations

import functools
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio


def main(path: Path, backend: str) -> None:
    real_run = anyio.run
    ran: list[bool] = []

    @functools.wraps(real_run)
    def run(func: Callable[..., Any], *args: Any, **options: Any) -> Any:
        ran.append(True)
        options.setdefault("backend", backend)
        return real_run(func, *args, **options)

    anyio.run = run  # type: ignore[assignment]
    sys.path[0] = str(path.parent)  # as `python FILE` has it, not this runner's folder
    namespace = runpy.run_path(str(path), run_name="__main__")
    app = namespace.get("app")
    if app is not None and not ran:
        from rooms.testing import Lifespan

        async def start_and_stop() -> None:
            async with Lifespan(app):
                pass

        real_run(start_and_stop, backend=backend)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
