"""Last good data per signal, in a local cache file, so a failed fetch never leaves the planner
without values: it gets the last good series marked stale (never zeros)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ems.signals.series import Signal, SignalError, combine


class SignalCache:
    """One JSON file per signal name under ``directory``; writes are atomic (temp file + rename)."""

    def __init__(self, directory: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 retention_days: float = 42.0) -> None:
        self.directory = directory
        self.clock = clock
        self.retention = pd.Timedelta(days=retention_days)

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def save(self, name: str, signal: Signal) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        record = {
            "unit": signal.unit,
            "kind": signal.kind,
            "source": signal.source,
            "resolution_s": signal.resolution.total_seconds(),
            "fetched_at": (signal.fetched_at or self.clock()).isoformat(),
            "start_utc": [t.isoformat() for t in signal.values.index],
            "values": [float(v) for v in signal.values],
        }
        tmp = self._path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self._path(name))

    def load(self, name: str) -> Signal | None:
        path = self._path(name)
        if not path.exists():
            return None
        try:
            r = json.loads(path.read_text())
            index = pd.DatetimeIndex(pd.to_datetime(r["start_utc"], utc=True, format="ISO8601"))
            return Signal(
                pd.Series(r["values"], index=index, dtype=float), r["unit"], r["kind"], r["source"],
                pd.Timedelta(seconds=r["resolution_s"]), datetime.fromisoformat(r["fetched_at"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SignalError(f"{path}: cache file unreadable: {exc}") from None

    def refresh(self, name: str, fetch: Callable[[], Signal]) -> Signal:
        """Fetch and record ``name``; when the fetch fails (SignalError or OSError) return the last
        good data marked stale with the reason. Raises SignalError only when there is none."""
        try:
            signal = fetch()
        except (SignalError, OSError) as exc:
            last = self.load(name)
            if last is None:
                raise SignalError(f"{name}: fetch failed and no earlier data: {exc}") from None
            return last.as_stale(f"{name}: fetch failed, using data fetched at "
                                 f"{last.fetched_at.isoformat() if last.fetched_at else '?'}: {exc}")
        fetched = Signal(
            signal.values, signal.unit, signal.kind, signal.source, signal.resolution, self.clock()
        )
        self.save(name, self._with_history(name, fetched))
        return fetched

    def _with_history(self, name: str, fetched: Signal) -> Signal:
        """``fetched`` over the recorded history of the same unit and kind (newest values win),
        trimmed to ``retention`` before the newest value, so persistence has days to repeat."""
        try:
            last = self.load(name)
        except SignalError:
            last = None  # an unreadable file is replaced by the good data
        if last is None or (last.unit, last.kind) != (fetched.unit, fetched.kind):
            return fetched
        merged = combine(last, fetched)
        keep = merged.values.index >= merged.values.index[-1] - self.retention
        return Signal(merged.values[keep], fetched.unit, fetched.kind, fetched.source,
                      merged.resolution, fetched.fetched_at)
