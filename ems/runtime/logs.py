"""The service's logs: text for a terminal, or one JSON object per line (``--log-format json``)
for log collectors. Events carry their fields as JSON keys: ``event`` is "plan", "plan_failed",
"mode" or "alarm" (see `ems.runtime.service`)."""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

from ems.redact import RedactingFilter

LogFormat = Literal["text", "json"]


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
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
