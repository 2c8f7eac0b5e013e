"""Per-step inputs of a site over a period, computed once and sliced per horizon."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ems.config.loader import LoadedSite
from ems.config.models import (
    CarbonSource,
    DailySessions,
    DemandCharge,
    DynamicTariff,
    EvChargerConfig,
    FileSessions,
    FixedTariff,
    PvConfig,
    SeriesTariff,
    SiteConfig,
    Tariff,
    TouTariff,
    minutes_of_day,
)
from ems.inputs.calendar import any_window, local_midnight_utc, local_steps, window_mask
from ems.inputs.csv_series import SeriesFileError, read_series, to_steps
from ems.signals.series import SignalError
from ems.signals.site_signals import adjusted_prices, cached_on_steps
from ems.signals.units import price_unit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvSessionEvent:
    """A vehicle's stay at a charger: UTC arrival/departure and the energy it wants (kWh)."""

    session_id: str
    charger: str
    arrival_utc: datetime
    departure_utc: datetime
    energy_kwh: float


@dataclass
class SiteInputs:
    """Step-resolution inputs. Columns of `frame`:

    import_price_per_kwh, export_price_per_kwh, carbon_g_per_kwh (the signal the optimiser
    weighs, `carbon_kind`), carbon_average_g_per_kwh and/or carbon_marginal_g_per_kwh (each one
    configured), import_limit_kw,
    export_limit_kw, demand_window (bool; the first demand charge's steps, all True without one),
    demand_window:<k> (bool; demand charge k >= 1), pv:<name>_kw, load:<name>_kw, h2:<offtake>_kg
    (kg per step). Index: step starts (UTC).
    """

    frame: pd.DataFrame
    step_minutes: int
    sessions: list[EvSessionEvent]
    carbon_kind: str
    dropped_sessions: int = 0
    notes: list[str] = field(default_factory=list)

    def window(self, start: pd.Timestamp, n_steps: int) -> pd.DataFrame:
        i = self.frame.index.get_indexer([start])[0]
        if i < 0 or i + n_steps > len(self.frame):
            raise SeriesFileError(
                f"inputs cover {self.frame.index[0].isoformat()} to {self.frame.index[-1].isoformat()}; "
                f"{n_steps} steps from {start.isoformat()} were asked for"
            )
        return self.frame.iloc[i:i + n_steps]


def step_index(start_utc: datetime, end_utc: datetime, step_minutes: int) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(start_utc).tz_convert("UTC"), pd.Timestamp(end_utc).tz_convert("UTC"),
                         freq=f"{step_minutes}min", inclusive="left")


def tariff_prices(tariff: Tariff, site: LoadedSite, steps: pd.DatetimeIndex, what: str,
                  notes: list[str] | None = None) -> np.ndarray:
    """Price per kWh at each step (currency of the site)."""
    currency = site.config.site.currency
    if isinstance(tariff, FixedTariff):
        return np.full(len(steps), tariff.price_per_kwh)
    if isinstance(tariff, SeriesTariff):
        path = site.resolve(tariff.file)
        raw = to_steps(read_series(path, tariff.column), steps, f"{what} ({path})").to_numpy()
        source_currency, factor = price_unit(tariff.unit) if tariff.unit else (currency, 1.0)
        return _adjusted(raw * factor, source_currency, tariff, currency, what)
    if isinstance(tariff, DynamicTariff):
        kind = "import_price" if what == "grid.tariff" else "export_price"
        try:
            signal, raw, more = cached_on_steps(site, kind, what, steps)
        except SignalError as exc:
            raise SeriesFileError(str(exc)) from None
        if notes is not None:
            notes.extend(more)
        return _adjusted(raw, signal.currency, tariff, currency, what)
    assert isinstance(tariff, TouTariff)
    return tou_prices(tariff, local_steps(steps, site.config.site.timezone))


def _adjusted(raw: np.ndarray, source_currency: str | None, tariff: DynamicTariff | SeriesTariff,
              site_currency: str, what: str) -> np.ndarray:
    try:
        return adjusted_prices(raw, source_currency, tariff, site_currency, what)
    except SignalError as exc:
        raise SeriesFileError(str(exc)) from None


def carbon_series(cs: CarbonSource, site: LoadedSite, steps: pd.DatetimeIndex, what: str,
                  notes: list[str]) -> np.ndarray:
    """Grid carbon intensity (gCO2/kWh) at each step, from its file or the signal cache."""
    if cs.file is not None:
        path = site.resolve(cs.file)
        values = to_steps(read_series(path, cs.column), steps, f"{what} ({path})").to_numpy()
    else:
        try:
            _, values, more = cached_on_steps(site, f"carbon_{cs.kind}", what, steps)
        except SignalError as exc:
            raise SeriesFileError(str(exc)) from None
        notes.extend(more)
    if np.any(values < 0):
        raise SeriesFileError(f"{what}: negative intensity {float(values.min())} gCO2/kWh")
    return values


def tou_prices(tariff: TouTariff, local: pd.DatetimeIndex) -> np.ndarray:
    prices = np.full(len(local), tariff.prices[tariff.default_period])
    for rule in tariff.rules:
        prices[window_mask(rule, local, tariff.holidays)] = tariff.prices[rule.period]
    return prices


def tou_periods(tariff: TouTariff, local: pd.DatetimeIndex) -> np.ndarray:
    """Period name of each step (for tables and tests)."""
    names = np.full(len(local), tariff.default_period, dtype=object)
    for rule in tariff.rules:
        names[window_mask(rule, local, tariff.holidays)] = rule.period
    return names


@lru_cache(maxsize=16)
def _pv_hourly(weather_path: str, mtime: float, lat: float, lon: float, kwp: float, tilt: float,
               azimuth: float, loss: float) -> pd.Series:
    """PV AC kW of a weather file (`ems.pv_model.pv_from_weather_file`). Computed in a child
    process while pvlib is not imported here: pvlib brings scipy, 50-70 MB that a long-running
    process (the site service) would keep for a year of PV it needs once. Same numbers."""
    args = (weather_path, lat, lon, kwp, tilt, azimuth, loss)
    if "pvlib" not in sys.modules:
        hourly = _pv_in_child(args)
        if hourly is not None:
            return hourly
    from ems.pv_model import pv_from_weather_file

    return pv_from_weather_file(*args)


_CHILD_CODE = ("import sys; sys.path.insert(0, sys.argv[1]); "
               "from ems.pv_model import child_main; child_main()")


def _pv_in_child(args: tuple[str, float, float, float, float, float, float]) -> pd.Series | None:
    """`pv_from_weather_file(*args)` run by a child Python; raises what it raised; None when the
    child cannot run (the caller computes in this process)."""
    root = str(Path(__file__).resolve().parents[2])  # the directory holding this `ems` package
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD_CODE, root], input=pickle.dumps(args),
                              stdout=subprocess.PIPE, timeout=300, check=False)
        status, value = pickle.loads(proc.stdout) if proc.returncode == 0 else ("failed", None)
    except (OSError, subprocess.SubprocessError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        status, value = "failed", exc
    if status == "ok" and isinstance(value, pd.Series):
        return value
    if status == "error" and isinstance(value, BaseException):
        raise value
    log.warning("PV of %s: the child process failed (%s); computing it here", args[0],
                value if value is not None else f"exit status {proc.returncode}")
    return None


def pv_series(pv: PvConfig, site: LoadedSite, steps: pd.DatetimeIndex) -> np.ndarray:
    cfg = site.config.site
    if pv.series_file is not None:
        path = site.resolve(pv.series_file)
        per_kwp = read_series(path, pv.series_column)
        return to_steps(per_kwp, steps, f"pv {pv.name} ({path})").to_numpy() * pv.kwp
    assert pv.weather_file is not None
    path = site.resolve(pv.weather_file)
    hourly = _pv_hourly(str(path), path.stat().st_mtime, cfg.latitude, cfg.longitude, pv.kwp,
                        pv.tilt_deg, pv.azimuth_deg, pv.system_loss_fraction)
    return np.clip(to_steps(hourly, steps, f"pv {pv.name} weather ({path})").to_numpy(), 0.0, None)


def limit_series(base_kw: float, rules: list, local: pd.DatetimeIndex) -> np.ndarray:  # type: ignore[type-arg]
    out = np.full(len(local), base_kw)
    for rule in rules:
        out[window_mask(rule, local)] = rule.kw
    return out


def daily_sessions(cfg: DailySessions, tz: str, start: datetime, end: datetime) -> list[EvSessionEvent]:
    zone = ZoneInfo(tz)
    first = (start.astimezone(zone) - timedelta(days=1)).date()
    last = end.astimezone(zone).date()
    out = []
    day = first
    while day <= last:
        for entry in cfg.schedule:
            weekday = day.weekday() < 5
            if (entry.days == "weekdays" and not weekday) or (entry.days == "weekends" and weekday):
                continue
            arrive = _local(day, entry.arrive, zone)
            overnight = minutes_of_day(entry.depart) <= minutes_of_day(entry.arrive)
            depart_day = day + timedelta(days=1) if overnight else day
            depart = _local(depart_day, entry.depart, zone)
            for charger in entry.chargers:
                out.append(EvSessionEvent(
                    session_id=f"{charger}@{arrive.astimezone(zone):%Y-%m-%dT%H:%M}",
                    charger=charger, arrival_utc=arrive.astimezone(ZoneInfo("UTC")),
                    departure_utc=depart.astimezone(ZoneInfo("UTC")), energy_kwh=entry.energy_kwh))
        day += timedelta(days=1)
    return [s for s in out if s.departure_utc > start and s.arrival_utc < end]


def _local(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    minutes = minutes_of_day(hhmm)
    return datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(minutes=minutes)


def file_sessions(cfg: FileSessions, site: LoadedSite, chargers: list[EvChargerConfig],
                  start: datetime, end: datetime) -> tuple[list[EvSessionEvent], int]:
    """Recorded sessions mapped onto chargers; a session whose charger is busy moves to a free
    one, or is dropped (counted) when none is free."""
    path = site.resolve(cfg.file)
    try:
        raw = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise SeriesFileError(f"{path}: cannot read CSV: {exc}") from None
    need = ["session_id", "station_id", "arrival_utc", "departure_utc", "energy_kwh"]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise SeriesFileError(f"{path}: missing columns {missing} (have {list(raw.columns)})")
    arr = pd.to_datetime(raw["arrival_utc"], utc=True, format="ISO8601")
    dep = pd.to_datetime(raw["departure_utc"], utc=True, format="ISO8601")
    keep = (dep > pd.Timestamp(start)) & (arr < pd.Timestamp(end))
    raw, arr, dep = raw[keep], arr[keep], dep[keep]
    names = [c.name for c in chargers]
    mapping = dict(cfg.station_map)
    free_at: dict[str, pd.Timestamp] = {n: pd.Timestamp.min.tz_localize("UTC") for n in names}
    out, dropped = [], 0
    for (_, row), a, d in zip(raw.iterrows(), arr, dep, strict=True):
        station = str(row["station_id"])
        if station not in mapping:
            mapping[station] = station if station in free_at else names[len(mapping) % len(names)]
        charger = mapping[station]
        if free_at[charger] > a:
            alternatives = [n for n in names if free_at[n] <= a]
            if not alternatives:
                dropped += 1
                continue
            charger = alternatives[0]
        free_at[charger] = d
        out.append(EvSessionEvent(session_id=str(row["session_id"]), charger=charger,
                                  arrival_utc=a.to_pydatetime(), departure_utc=d.to_pydatetime(),
                                  energy_kwh=float(row["energy_kwh"])))
    return out, dropped


def data_limit_utc(site: LoadedSite) -> datetime | None:
    """End of the site's bundled data (local midnight after `data_end`), if the config says."""
    last = site.config.site.data_end
    if last is None:
        return None
    return local_midnight_utc(date.fromisoformat(last) + timedelta(days=1), site.config.site.timezone)


def data_start_utc(site: LoadedSite) -> datetime | None:
    """Start of the site's bundled data (local midnight of `data_start`), if the config says."""
    first = site.config.site.data_start
    if first is None:
        return None
    return local_midnight_utc(date.fromisoformat(first), site.config.site.timezone)


def extend_by_persistence(inputs: SiteInputs, until_utc: datetime,
                          keep_from_utc: datetime | None = None) -> SiteInputs:
    """Inputs continued past their end up to `until_utc`: every series repeats its value of one
    week earlier (a persistence forecast, for planning horizons that look past the data).
    Steps before `keep_from_utc` (history used for the repeat) are then dropped."""
    frame = inputs.frame
    step = pd.Timedelta(minutes=inputs.step_minutes)
    extra = pd.date_range(frame.index[-1] + step, pd.Timestamp(until_utc), freq=step, inclusive="left")
    if len(extra) == 0:
        return inputs
    week = int(pd.Timedelta(days=7) / step)
    if len(frame) < week:
        raise SeriesFileError(f"cannot extend inputs past {frame.index[-1].isoformat()}: "
                              "less than a week of data to repeat")
    values = np.concatenate([frame.to_numpy(), np.empty((len(extra), frame.shape[1]), dtype=object)])
    for k in range(len(frame), len(frame) + len(extra)):
        values[k] = values[k - week]
    out = pd.DataFrame(values, index=frame.index.append(extra), columns=frame.columns)
    out = out.astype(frame.dtypes.to_dict())
    if keep_from_utc is not None:
        out = out[out.index >= pd.Timestamp(keep_from_utc)]
    note = f"inputs after {frame.index[-1].isoformat()} repeat the week before (persistence)"
    return SiteInputs(frame=out, step_minutes=inputs.step_minutes, sessions=inputs.sessions,
                      carbon_kind=inputs.carbon_kind, dropped_sessions=inputs.dropped_sessions,
                      notes=[*inputs.notes, note])


def demand_window_column(k: int) -> str:
    """Frame column of demand charge k's counted steps ("demand_window" for the first)."""
    return "demand_window" if k == 0 else f"demand_window:{k}"


def demand_windows(charges: list[DemandCharge], local: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Per demand charge, the steps whose import counts (its windows, in its months)."""
    out = {"demand_window": np.ones(len(local), bool)}
    for k, dc in enumerate(charges):
        mask = any_window(dc.windows, local) if dc.windows else np.ones(len(local), bool)
        if dc.months is not None:
            mask &= np.isin(np.asarray(local.month), dc.months)
        out[demand_window_column(k)] = mask
    return out


def build_inputs(site: LoadedSite, start_utc: datetime, end_utc: datetime,
                 signals: bool = True) -> SiteInputs:
    """Inputs for every step in [start_utc, end_utc). ``signals=False`` leaves out the price and
    carbon columns (a plant simulator needs only PV, load, offtake and sessions, and a live
    signal may not be fetched yet)."""
    cfg: SiteConfig = site.config
    steps = step_index(start_utc, end_utc, cfg.planning.step_minutes)
    local = local_steps(steps, cfg.site.timezone)
    step_h = cfg.planning.step_minutes / 60.0
    g = cfg.grid
    notes: list[str] = []
    cols: dict[str, np.ndarray] = {}
    if signals:
        carbon = {cs.kind: carbon_series(cs, site, steps, "grid.carbon" if len(g.carbon) == 1
                                         else f"grid.carbon[{i}]", notes)
                  for i, cs in enumerate(g.carbon)}
        cols.update({
            "import_price_per_kwh": tariff_prices(g.tariff, site, steps, "grid.tariff", notes),
            "export_price_per_kwh": tariff_prices(g.export_tariff, site, steps, "grid.export_tariff",
                                                  notes),
            "carbon_g_per_kwh": carbon[cfg.planning_carbon.kind],
            **{f"carbon_{kind}_g_per_kwh": values for kind, values in carbon.items()},
        })
    cols.update({
        "import_limit_kw": limit_series(g.import_limit_kw, g.import_limit_rules, local),
        "export_limit_kw": limit_series(g.export_limit_kw, g.export_limit_rules, local),
        **demand_windows(g.demand_charges, local),
    })
    for pv in cfg.pv:
        cols[f"pv:{pv.name}_kw"] = pv_series(pv, site, steps)
    for ld in cfg.load:
        path = site.resolve(ld.file)
        cols[f"load:{ld.name}_kw"] = to_steps(read_series(path, ld.column), steps,
                                              f"load {ld.name} ({path})").to_numpy() * ld.scale
    for off in cfg.hydrogen_offtake:
        if off.file is not None:
            path = site.resolve(off.file)
            what = f"hydrogen_offtake {off.name} ({path})"
            kg_h = to_steps(read_series(path, off.column), steps, what).to_numpy()
        else:
            kg_h = np.zeros(len(steps))
            for w in off.schedule:
                kg_h[window_mask(w, local)] += w.kg_per_hour
        cols[f"h2:{off.name}_kg"] = kg_h * step_h
    frame = pd.DataFrame(cols, index=steps)
    sessions: list[EvSessionEvent] = []
    dropped = 0
    if isinstance(cfg.ev_sessions, DailySessions):
        sessions = daily_sessions(cfg.ev_sessions, cfg.site.timezone, start_utc, end_utc)
    elif isinstance(cfg.ev_sessions, FileSessions):
        sessions, dropped = file_sessions(cfg.ev_sessions, site, cfg.ev_charger, start_utc, end_utc)
    sessions.sort(key=lambda s: (s.arrival_utc, s.charger))
    return SiteInputs(frame=frame, step_minutes=cfg.planning.step_minutes, sessions=sessions,
                      carbon_kind=cfg.planning_carbon.kind, dropped_sessions=dropped, notes=notes)
