"""The rooms benchmark app with Prometheus metrics on (``rooms.metrics``): what they cost is
``rooms + metrics`` ÷ ``rooms`` in the same run."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from rooms_app import app, server

from rooms.metrics import Metrics

metrics = Metrics(server, registry=CollectorRegistry())

__all__ = ["app", "metrics"]
