"""A site's live signals: which ones its config names, fetching them into the signal cache, and
reading them back onto plan steps (prices in the site currency with adders and taxes applied).

Signal names in the cache: ``import_price``, ``export_price``, ``carbon_average``,
``carbon_marginal``. Prices are cached as the source gives them (per kWh in the source currency)
so a change of adders or taxes in the config applies without a new fetch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ems.config.loader import LoadedSite
from ems.config.models import CarbonSource, DynamicTariff, PriceAdjustments
from ems.signals.cache import SignalCache
from ems.signals.fetch import Get, fetch_carbon, fetch_prices
from ems.signals.http import get as http_get
from ems.signals.series import Signal, SignalError, SignalKind, resample_to_step

MAX_AGE = pd.Timedelta(days=7)
"""Cached data that ends longer than this before the steps asked for is refused, not repeated."""


def state_dir(site: LoadedSite) -> Path:
    """Where the site keeps its records: ``site.state_dir`` (relative to the config file), else
    ``$EMS_STATE_DIR/<site name>``, else ``state/<site name>`` next to the config file."""
    cfg = site.config.site
    if cfg.state_dir is not None:
        return site.resolve(cfg.state_dir)
    root = os.environ.get("EMS_STATE_DIR")
    if root:
        return Path(root) / cfg.name
    return site.resolve("state") / cfg.name


def signal_cache(site: LoadedSite, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> SignalCache:
    return SignalCache(state_dir(site) / "signals", clock)


@dataclass(frozen=True)
class LiveSignal:
    """One signal of the site that is fetched from a provider."""

    name: SignalKind
    config_field: str
    """Where it is configured, e.g. "grid.tariff" or "grid.carbon[1]"."""
    provider: str
    fetch: Callable[[datetime, Get], Signal]


def live_signals(site: LoadedSite) -> list[LiveSignal]:
    g = site.config.grid
    out: list[LiveSignal] = []
    for field, kind in (("tariff", "import_price"), ("export_tariff", "export_price")):
        tariff = getattr(g, field)
        if isinstance(tariff, DynamicTariff):
            src = tariff.source

            def fetch(now: datetime, get: Get, src=src, kind=kind) -> Signal:  # type: ignore[no-untyped-def]
                return fetch_prices(src, kind, now, get)

            out.append(LiveSignal(kind, f"grid.{field}", src.provider, fetch))  # type: ignore[arg-type]
    for i, cs in enumerate(g.carbon):
        if cs.source is not None:
            csrc = cs.source

            def fetch_c(now: datetime, get: Get, csrc=csrc) -> Signal:  # type: ignore[no-untyped-def]
                return fetch_carbon(csrc, now, get)

            field = "grid.carbon" if len(g.carbon) == 1 else f"grid.carbon[{i}]"
            out.append(LiveSignal(f"carbon_{cs.kind}", field, csrc.provider, fetch_c))  # type: ignore[arg-type]
    return out


@dataclass(frozen=True)
class FetchOutcome:
    signal: LiveSignal
    result: Signal | None
    """What was fetched now, or the last good data (stale) when the fetch failed."""
    error: str | None = None
    """Why there is nothing at all (no earlier data either)."""


def fetch_all(site: LoadedSite, now: datetime, get: Get = http_get,
              cache: SignalCache | None = None) -> list[FetchOutcome]:
    """Fetch every live signal of the site now and record it; failures keep the last good data."""
    cache = cache or signal_cache(site, clock=lambda: now)
    out = []
    for live in live_signals(site):
        try:
            result = cache.refresh(live.name, lambda live=live: live.fetch(now, get))  # type: ignore[misc]
            out.append(FetchOutcome(live, result))
        except SignalError as exc:
            out.append(FetchOutcome(live, None, str(exc)))
    return out


def fill_by_persistence(values: pd.Series, step: pd.Timedelta) -> tuple[pd.Series, int]:
    """Missing steps get the blend of the same step a day and a week earlier (either alone when
    the other is missing, else the last known value): never zeros. Returns the count filled."""
    day, week = int(pd.Timedelta(days=1) / step), int(pd.Timedelta(days=7) / step)
    arr = values.to_numpy(dtype=float).copy()
    missing = np.flatnonzero(np.isnan(arr))
    last = np.nan
    for k in range(len(arr)):
        if not np.isnan(arr[k]):
            last = arr[k]
            continue
        a = arr[k - day] if k >= day else np.nan
        b = arr[k - week] if k >= week else np.nan
        if not np.isnan(a) and not np.isnan(b):
            arr[k] = 0.5 * (a + b)
        elif not np.isnan(a) or not np.isnan(b):
            arr[k] = a if not np.isnan(a) else b
        else:
            arr[k] = last
    return pd.Series(arr, index=values.index), len(missing)


def cached_on_steps(site: LoadedSite, name: str, what: str, steps: pd.DatetimeIndex,
                    cache: SignalCache | None = None) -> tuple[Signal, np.ndarray, list[str]]:
    """The cached signal ``name`` on ``steps`` (UTC starts), steps past the data filled by
    persistence. Raises SignalError naming ``what`` when there is no usable data."""
    cache = cache or signal_cache(site)
    signal = cache.load(name)
    if signal is None or signal.values.empty:
        raise SignalError(f"{what}: no {name} data recorded yet in {cache.directory}; "
                          f"run `ems signals fetch {site.config.site.name}`")
    step = steps.freq or pd.Timedelta(steps[1] - steps[0])
    on_grid = resample_to_step(signal, pd.Timedelta(step))
    first, last = on_grid.index[0], on_grid.index[-1]
    if steps[0] < first:
        raise SignalError(f"{what}: recorded {name} data starts {first.isoformat()}; steps from "
                          f"{steps[0].isoformat()} were asked for")
    if steps[0] - last > MAX_AGE:
        raise SignalError(f"{what}: recorded {name} data ends {last.isoformat()}, more than "
                          f"{MAX_AGE.days} days before {steps[0].isoformat()}; run "
                          f"`ems signals fetch {site.config.site.name}`")
    grid = pd.date_range(first, max(steps[-1], last), freq=step, tz="UTC")
    filled, n = fill_by_persistence(on_grid.reindex(grid), pd.Timedelta(step))
    values = filled.reindex(steps).to_numpy()
    notes = []
    if n:
        notes.append(f"{what}: {name} from {signal.source} ends {last.isoformat()}; later steps "
                     "repeat the day and week before (persistence)")
    if signal.stale:
        notes.append(f"{what}: {signal.message}")
    return signal, values, notes


def adjusted_prices(raw_per_kwh: np.ndarray, currency: str | None, tariff: PriceAdjustments,
                    site_currency: str, what: str) -> np.ndarray:
    """Market prices (``currency``/kWh) → what the site pays, in the site currency per kWh."""
    rate = 1.0
    if currency is not None and currency != site_currency:
        if tariff.exchange_rate is None:
            raise SignalError(f"{what}.exchange_rate: prices are in {currency} but site.currency is "
                              f"{site_currency}; give {site_currency} per {currency}")
        rate = tariff.exchange_rate
    return (raw_per_kwh * rate + tariff.adder_per_kwh) * (1.0 + tariff.tax_fraction)


def carbon_label(cs: CarbonSource) -> str:
    """Where a carbon signal comes from, for tables and reports."""
    where = cs.source.provider if cs.source is not None else f"{cs.file}:{cs.column}"
    return f"{cs.kind} ({where})"
