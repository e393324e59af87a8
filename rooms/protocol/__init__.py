"""Sans-I/O codecs: pure functions and frozen dataclasses, no anyio and no ASGI."""
