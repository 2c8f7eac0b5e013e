"""The service's logs: text for a terminal, or one JSON object per line (``--log-format json``)
for log collectors. Events carry their fields as JSON keys: ``event`` is "plan", "plan_failed",
"mode" or "alarm" (see `ems.runtime.service`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

from ems.redact import RedactingFilter

LogFormat = Literal["text", "json"]

_OWN: list[logging.Handler] = []
"""The handler :func:`configure_logging` made (none when the caller logs its own way)."""


def configure_logging(fmt: LogFormat, verbose: bool) -> None:
    """Log to stderr at INFO (``verbose``) or WARNING, as text or JSON lines, secrets redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "{asctime}{levelname}{name}{message}", style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _OWN.clear()
    _OWN.append(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    handler.addFilter(_quiet_overlaps)  # a logger's filter would not see its children's records


def _quiet_overlaps(record: logging.LogRecord) -> bool:
    """APScheduler warns each time a job is due while its last run goes on; the service counts
    these itself (plans skipped while a solve runs; dispatch cycles), so they are not logged."""
    return "maximum number of running instances" not in record.getMessage()


class SiteTime(logging.Filter):
    """Adds ``site_time`` (ISO, the site's zone) to every record: log lines of a simulated run
    carry the site clock's time as well as the wall time."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        super().__init__()
        self.now = now

    def filter(self, record: logging.LogRecord) -> bool:
        record.site_time = self.now().isoformat(timespec="seconds")
        return True


def show_site_time(now: Callable[[], datetime]) -> None:
    """Stamp the service's log lines (those of :func:`configure_logging`) with the site time
    from ``now`` (for a simulated clock)."""
    for handler in _OWN:
        if not any(isinstance(f, SiteTime) for f in handler.filters):
            handler.addFilter(SiteTime(now))
        formatter = handler.formatter  # JSON lines take the record's site_time as a field
        if formatter is not None and not isinstance(formatter, JsonFormatter) \
                and "site_time" not in (formatter._fmt or ""):
            handler.setFormatter(logging.Formatter(
                "%(asctime)s [site %(site_time)s] %(levelname)s %(name)s: %(message)s"))
