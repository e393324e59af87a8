"""tests/apps/edges.py for the fuzz test (tests/edges/test_fuzz.py), its log made readable
by a machine: one JSON object a line per record, with its level, logger and exception.

Nothing else changes: the same ``server`` and ``app``. Neither uvicorn nor hypercorn
configures the root logger, so rooms' records would reach Python's last-resort handler,
which prints the message without its level or logger: an ERROR could not be told from a
WARNING, nor a record's traceback from a crash's. Output that is not a JSON line (a
traceback printed by the ASGI server, "Task exception was never retrieved" written past
logging) stays recognisable as foreign.
"""

from __future__ import annotations

import json
import logging

from tests.apps.edges import app, server

__all__ = ["app", "server"]


class JSONLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        return json.dumps(
            {
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                "exc_type": type(exc).__name__ if exc is not None else None,
                "exc_message": str(exc) if exc is not None else None,
                "traceback": self.formatException(record.exc_info) if record.exc_info else None,
            }
        )


_handler = logging.StreamHandler()  # stderr: the LiveServer's log file
_handler.setFormatter(JSONLines())
logging.getLogger().addHandler(_handler)
logging.getLogger().setLevel(logging.WARNING)
