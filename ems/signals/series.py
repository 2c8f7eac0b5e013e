"""A labelled signal series: values on UTC interval starts with their unit, kind and source."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import pandas as pd

SignalKind = Literal["import_price", "export_price", "carbon_average", "carbon_marginal"]


class SignalError(ValueError):
    """A source payload that cannot be used; the message names the source, the field and the value."""


@dataclass(frozen=True)
class Signal:
    """Interval values: ``values`` is indexed by the UTC start of each interval, ``resolution`` long.

    Prices are in ``unit`` = "<currency>/kWh"; carbon in "gCO2/kWh". ``kind`` keeps average and
    marginal carbon apart. ``stale`` is set when this is the last good data after a failed fetch.
    """

    values: pd.Series
    unit: str
    kind: SignalKind
    source: str
    resolution: pd.Timedelta
    fetched_at: datetime | None = None
    stale: bool = False
    message: str | None = None

    def __post_init__(self) -> None:
        idx = self.values.index
        if not isinstance(idx, pd.DatetimeIndex) or idx.tz is None or str(idx.tz) != "UTC":
            raise SignalError(f"{self.source}: values must have a UTC DatetimeIndex")
        if not idx.is_monotonic_increasing or idx.has_duplicates:
            raise SignalError(f"{self.source}: timestamps must be increasing and unique")

    @property
    def currency(self) -> str | None:
        return self.unit.split("/")[0] if self.kind.endswith("price") else None

    def as_stale(self, message: str) -> Signal:
        return replace(self, stale=True, message=message)

    def with_adder(self, per_kwh: float, what: str = "adder") -> Signal:
        """Prices plus a fixed amount per kWh (grid fees, taxes), same currency."""
        if not self.kind.endswith("price"):
            raise SignalError(f"{self.source}: {what}: only prices take adders, this is {self.kind}")
        return replace(self, values=self.values + per_kwh)


@contextmanager
def quiet_xml_parser() -> Iterator[None]:
    """entsoe-py parses XML with BeautifulSoup's HTML parser, which warns on every document."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XML document.*")
        yield


def utc_index(values: pd.Series | list[pd.Timestamp], source: str, field: str) -> pd.DatetimeIndex:
    """Timestamps parsed as UTC; a bad one raises SignalError naming ``field``."""
    try:
        return pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="ISO8601"))
    except (ValueError, TypeError) as exc:
        raise SignalError(f"{source}: {field}: bad timestamp: {exc}") from None


def resample_to_step(signal: Signal, step: pd.Timedelta) -> pd.Series:
    """Values on a ``step`` grid: finer source intervals are averaged (the 60-min price is the mean
    of its four quarter-hours); coarser ones are repeated for every step they cover."""
    s = signal.values.astype(float)
    if signal.resolution == step:
        return s
    if signal.resolution < step:
        return s.resample(step, origin="epoch").mean().dropna()
    end = s.index[-1] + signal.resolution
    grid = pd.date_range(s.index[0], end, freq=step, inclusive="left", tz="UTC")
    return s.reindex(grid, method="ffill")


def combine(older: Signal, newer: Signal) -> Signal:
    """Both series on the finer of the two resolutions; ``newer`` wins where they overlap."""
    step = min(older.resolution, newer.resolution)
    a = older.values if older.resolution == step else resample_to_step(older, step)
    b = newer.values if newer.resolution == step else resample_to_step(newer, step)
    merged = b.combine_first(a).sort_index()
    return Signal(merged, newer.unit, newer.kind, newer.source, step, newer.fetched_at)
