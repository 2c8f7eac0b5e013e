"""Carbon-intensity formats → :class:`Signal` in gCO2/kWh, labelled average or marginal.

Average (grid mix: UK Carbon Intensity, Electricity Maps, ENTSO-E generation mix) is for
accounting; marginal (WattTime MOER) is for shifting decisions. The label travels with the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pandas as pd

from ems.signals.prices import _get, _json, _number, _resolution, _series
from ems.signals.series import Signal, SignalError, quiet_xml_parser, utc_index

LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
"""1 lb/MWh = 453.59237 g / 1000 kWh."""

ENTSOE_EMISSION_FACTORS_G_PER_KWH: dict[str, float] = {
    "B01": 230.0,  # biomass
    "B02": 820.0,  # fossil brown coal/lignite (coal factor)
    "B03": 490.0,  # fossil coal-derived gas
    "B04": 490.0,  # fossil gas
    "B05": 820.0,  # fossil hard coal
    "B06": 650.0,  # fossil oil
    "B07": 650.0,  # fossil oil shale
    "B08": 820.0,  # fossil peat
    "B09": 38.0,  # geothermal
    "B10": 24.0,  # hydro pumped storage
    "B11": 24.0,  # hydro run-of-river
    "B12": 24.0,  # hydro water reservoir
    "B13": 24.0,  # marine
    "B14": 12.0,  # nuclear
    "B15": 230.0,  # other renewable
    "B16": 45.0,  # solar
    "B17": 490.0,  # waste (taken as gas-like combustion)
    "B18": 12.0,  # wind offshore
    "B19": 11.0,  # wind onshore
    "B20": 490.0,  # other
}
"""Lifecycle emission factors by ENTSO-E production type, gCO2eq/kWh: IPCC AR5 WG3 Annex III
medians (coal 820, gas 490, biomass 230, solar 45, geothermal 38, hydro 24, nuclear 12, wind
11–12); oil 650. Waste and "other" are taken at the gas factor."""


def parse_uk_intensity(
    payload: str | bytes | Mapping[str, Any], use: Literal["forecast", "actual"] = "forecast"
) -> Signal:
    """UK Carbon Intensity API ``/intensity...`` (national, 30 min, gCO2/kWh). With
    ``use="actual"`` slots without an actual value (the future) are dropped."""
    source = "uk_carbon_intensity"
    data = _get(_json(payload, source), "data", source, "")
    if not isinstance(data, list) or not data:
        raise SignalError(f"{source}: data: empty")
    starts, values = [], []
    for i, row in enumerate(data):
        where = f"data[{i}]."
        intensity = _get(row, "intensity", source, where)
        value = _get(intensity, use, source, where + "intensity.")
        if value is None:
            if use == "actual":
                continue
            raise SignalError(f"{source}: {where}intensity.forecast: null")
        starts.append(_get(row, "from", source, where))
        values.append(_number(value, source, f"{where}intensity.{use}"))
    if not values:
        raise SignalError(f"{source}: data: no {use} values")
    s = _series(utc_index(starts, source, "data[].from"), values, source)
    return Signal(s, "gCO2/kWh", "carbon_average", source, pd.Timedelta("30min"))


def parse_uk_regional(payload: str | bytes | Mapping[str, Any], region_id: int) -> Signal:
    """UK Carbon Intensity API ``/regional/intensity/{from}/fw24h`` for one region (forecast only),
    or ``/regional/regionid/{id}`` (one region with its own ``data`` list)."""
    source = "uk_carbon_intensity_regional"
    data = _get(_json(payload, source), "data", source, "")
    if not isinstance(data, list) or not data:
        raise SignalError(f"{source}: data: empty")
    starts, values = [], []
    if "regions" in data[0]:
        for i, slot in enumerate(data):
            where = f"data[{i}]."
            regions = [r for r in _get(slot, "regions", source, where) if r.get("regionid") == region_id]
            if not regions:
                raise SignalError(f"{source}: {where}regions: no regionid {region_id}")
            starts.append(_get(slot, "from", source, where))
            intensity = _get(regions[0], "intensity", source, where + "regions[].")
            forecast = _get(intensity, "forecast", source, where + "regions[].intensity.")
            values.append(_number(forecast, source, f"data[{i}].regions[].intensity.forecast"))
    else:
        matching = [r for r in data if r.get("regionid") == region_id]
        if not matching:
            raise SignalError(f"{source}: data: no regionid {region_id}")
        for i, slot in enumerate(_get(matching[0], "data", source, "data[].")):
            starts.append(_get(slot, "from", source, f"data[].data[{i}]."))
            forecast = _get(_get(slot, "intensity", source, f"data[].data[{i}]."), "forecast", source,
                            f"data[].data[{i}].intensity.")
            values.append(_number(forecast, source, f"data[].data[{i}].intensity.forecast"))
    s = _series(utc_index(starts, source, "from"), values, source)
    return Signal(s, "gCO2/kWh", "carbon_average", source, pd.Timedelta("30min"))


def parse_electricity_maps(payload: str | bytes | Mapping[str, Any]) -> Signal:
    """Electricity Maps v3 ``carbon-intensity/latest``, ``/forecast`` or ``/history`` (gCO2eq/kWh,
    consumption-based, lifecycle unless the payload says direct)."""
    source = "electricity_maps"
    data = _json(payload, source)
    if not isinstance(data, Mapping):
        raise SignalError(f"{source}: expected a JSON object")
    if "forecast" in data:
        rows, where = data["forecast"], "forecast"
    elif "history" in data:
        rows, where = data["history"], "history"
    elif "carbonIntensity" in data:
        rows, where = [data], "latest"
    else:
        raise SignalError(f"{source}: expected one of forecast, history or carbonIntensity")
    if not isinstance(rows, list) or not rows:
        raise SignalError(f"{source}: {where}: empty")
    values = [_number(_get(r, "carbonIntensity", source, f"{where}[{i}]."), source,
                      f"{where}[{i}].carbonIntensity") for i, r in enumerate(rows)]
    index = utc_index([_get(r, "datetime", source, f"{where}[{i}].") for i, r in enumerate(rows)],
                      source, f"{where}[].datetime")
    s = _series(index, values, source)
    granularity = {"5_minutes": "5min", "15_minutes": "15min", "hourly": "60min", "daily": "1D"}
    declared = data.get("temporalGranularity")
    if len(s) >= 2:
        resolution = _resolution(s.index, source)
    elif declared in granularity:
        resolution = pd.Timedelta(granularity[declared])
    else:
        resolution = pd.Timedelta("60min")
    return Signal(s, "gCO2/kWh", "carbon_average", source, resolution)


def parse_watttime(payload: str | bytes | Mapping[str, Any]) -> Signal:
    """WattTime v3 ``/forecast`` or ``/historical`` for ``co2_moer`` (marginal) in lbs/MWh → g/kWh."""
    source = "watttime"
    data = _json(payload, source)
    meta = _get(data, "meta", source, "")
    signal_type = _get(meta, "signal_type", source, "meta.")
    units = _get(meta, "units", source, "meta.")
    if signal_type != "co2_moer":
        raise SignalError(f"{source}: meta.signal_type: expected co2_moer, got {signal_type!r}")
    if units != "lbs_co2_per_mwh":
        raise SignalError(f"{source}: meta.units: expected lbs_co2_per_mwh, got {units!r}")
    rows = _get(data, "data", source, "")
    if not isinstance(rows, list) or not rows:
        raise SignalError(f"{source}: data: empty")
    values = [_number(_get(r, "value", source, f"data[{i}]."), source, f"data[{i}].value")
              * LBS_PER_MWH_TO_G_PER_KWH for i, r in enumerate(rows)]
    index = utc_index([_get(r, "point_time", source, f"data[{i}].") for i, r in enumerate(rows)],
                      source, "data[].point_time")
    period = meta.get("data_point_period_seconds")
    resolution = pd.Timedelta(seconds=period) if isinstance(period, int) and period > 0 else None
    s = _series(index, values, source)
    return Signal(s, "gCO2/kWh", "carbon_marginal", source, resolution or _resolution(s.index, source))


def parse_entsoe_generation(
    xml: str | bytes, factors: Mapping[str, float] = ENTSOE_EMISSION_FACTORS_G_PER_KWH
) -> Signal:
    """ENTSO-E actual generation per type (A75/A16) → production-based average intensity
    CI(t) = Σ P_k·EF_k / Σ P_k, gCO2/kWh. Consumption series (pumping) are left out."""
    from entsoe.parsers import parse_generation

    source = "entsoe_a75"
    text = xml.decode() if isinstance(xml, bytes) else xml
    if "Acknowledgement_MarketDocument" in text:
        raise SignalError(f"{source}: no data (acknowledgement)")
    if "GL_MarketDocument" not in text:
        raise SignalError(f"{source}: not a GL_MarketDocument")
    try:
        with quiet_xml_parser():
            frame = parse_generation(text, nett=False)
    except Exception as exc:  # entsoe-py raises whatever bs4/pandas raise on a malformed document
        raise SignalError(f"{source}: malformed document: {type(exc).__name__}: {exc}") from None
    if frame.empty:
        raise SignalError(f"{source}: document holds no generation")
    from entsoe.mappings import PSRTYPE_MAPPINGS

    by_name = {name: code for code, name in PSRTYPE_MAPPINGS.items()}
    mw: dict[str, pd.Series] = {}
    for column in frame.columns:
        name, direction = column if isinstance(column, tuple) else (column, "Actual Aggregated")
        if direction != "Actual Aggregated":
            continue
        code = by_name.get(name)
        if code is None or code not in factors:
            raise SignalError(f"{source}: production type {name!r}: no emission factor")
        mw[code] = frame[column].astype(float).fillna(0.0)
    total = sum(mw.values())
    weighted = sum(series * factors[code] for code, series in mw.items())
    if not isinstance(total, pd.Series) or not isinstance(weighted, pd.Series):
        raise SignalError(f"{source}: document holds no actual generation")
    if (total <= 0).any():
        at = total.index[(total <= 0).argmax()]
        raise SignalError(f"{source}: total generation at {pd.Timestamp(at).isoformat()} is {total[at]:g} MW")
    ci = (weighted / total).sort_index()
    ci.index = pd.DatetimeIndex(ci.index).tz_convert("UTC")
    return Signal(ci, "gCO2/kWh", "carbon_average", source, _resolution(ci.index, source))


def persistence_forecast(history: Signal, start: pd.Timestamp, periods: int,
                         weight_yesterday: float = 0.5) -> Signal:
    """A forecast where a source gives none: each interval is the blend of the same time
    yesterday and the same time last week (weights ``weight_yesterday`` and the rest); where one
    of them is missing the other is used alone. Raises SignalError when both are missing."""
    if not 0.0 <= weight_yesterday <= 1.0:
        raise SignalError(f"persistence: weight_yesterday must be within [0, 1], got {weight_yesterday!r}")
    s = history.values
    index = pd.date_range(start, periods=periods, freq=history.resolution, tz="UTC")
    day = s.reindex(index - pd.Timedelta(days=1))
    week = s.reindex(index - pd.Timedelta(days=7))
    day.index = index
    week.index = index
    blend = weight_yesterday * day + (1.0 - weight_yesterday) * week
    out = blend.fillna(day).fillna(week)
    if out.isna().any():
        at = out.index[out.isna().argmax()]
        raise SignalError(f"persistence: no history a day or a week before {at.isoformat()}")
    return Signal(out, history.unit, history.kind, f"{history.source}+persistence", history.resolution)
