"""Alarms of the running service: raised and cleared in the store, counted in the metrics and
logged (one JSON line each with ``--log-format json``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from ems.redact import redact
from ems.runtime.metrics import ServiceMetrics
from ems.store import Store

log = logging.getLogger("ems.service")


class Alarms:
    def __init__(self, store: Store, metrics: ServiceMetrics, now: Callable[[], datetime]) -> None:
        self.store = store
        self.metrics = metrics
        self.now = now

    def raise_(self, device: str, code: str, severity: str, message: str) -> None:
        """Open an alarm (once per device and code); ``message`` is stored and logged redacted."""
        message = redact(message)
        alarm_id = self.store.raise_alarm(self.now(), device, code, severity, message)
        if alarm_id is not None:
            self.metrics.alarms.labels(device, code).inc()
            log.warning("alarm %s %s (%s): %s", device, code, severity, message, extra={
                "event": "alarm", "alarm_id": alarm_id, "device": device, "code": code,
                "severity": severity})

    def clear(self, device: str, code: str) -> None:
        if self.store.clear_alarm(self.now(), device, code):
            log.info("alarm %s %s cleared", device, code, extra={
                "event": "alarm_cleared", "device": device, "code": code})
