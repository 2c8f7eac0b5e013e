"""Day-ahead price formats → :class:`Signal` in currency per kWh.

ENTSO-E A44 XML (EUR/MWh, curve A03 with repeated prices omitted: entsoe-py forward-fills them),
Nord Pool Data Portal JSON (EUR/MWh), Octopus Agile JSON (p/kWh, newest first, paginated),
Tibber GraphQL JSON (currency/kWh, tax included).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import pandas as pd

from ems.signals.series import Signal, SignalError, SignalKind, quiet_xml_parser, utc_index

PER_MWH_TO_PER_KWH = 1e-3
PENCE_TO_POUNDS = 1e-2


def _json(payload: str | bytes | Mapping[str, Any], source: str) -> Any:
    if isinstance(payload, Mapping):
        return payload
    try:
        return json.loads(payload)
    except (ValueError, TypeError) as exc:
        raise SignalError(f"{source}: not valid JSON: {exc}") from None


def _get(obj: Any, key: str, source: str, where: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise SignalError(f"{source}: {where}{key}: missing")
    return obj[key]


def _number(value: Any, source: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignalError(f"{source}: {field}: not a number, got {value!r}")
    return float(value)


def _series(index: pd.DatetimeIndex, values: list[float], source: str) -> pd.Series:
    s = pd.Series(values, index=index, dtype=float).sort_index()
    if s.index.has_duplicates:
        dup = s.index[s.index.duplicated()][0]
        raise SignalError(f"{source}: interval {dup.isoformat()} appears twice")
    return s


def _resolution(index: pd.DatetimeIndex, source: str) -> pd.Timedelta:
    if len(index) < 2:
        raise SignalError(f"{source}: need at least two intervals to know the resolution, got {len(index)}")
    steps = pd.Series(index[1:] - index[:-1])
    return pd.Timedelta(steps.min())


# -- ENTSO-E ---------------------------------------------------------------------------------------

_TAG = re.compile(r"<(?:\w+:)?{tag}>\s*([^<]+?)\s*</(?:\w+:)?{tag}>")


def _xml_values(xml: str, tag: str) -> set[str]:
    return set(re.findall(_TAG.pattern.format(tag=re.escape(tag)), xml))


def parse_entsoe_a44(
    xml: str | bytes, step: Literal["15min", "60min"] | None = None, kind: SignalKind = "import_price"
) -> Signal:
    """ENTSO-E day-ahead prices (documentType A44) → currency/kWh at the document's resolution
    (the finest present unless ``step`` picks one). Raises SignalError for an acknowledgement
    (no data) or a currency or unit other than EUR per MWH."""
    from entsoe.parsers import parse_prices

    source = "entsoe_a44"
    text = xml.decode() if isinstance(xml, bytes) else xml
    if "Acknowledgement_MarketDocument" in text:
        codes = ", ".join(sorted(_xml_values(text, "code"))) or "?"
        reason = "; ".join(sorted(_xml_values(text, "text"))) or "no reason given"
        raise SignalError(f"{source}: no data (acknowledgement, reason code {codes}: {reason})")
    if "Publication_MarketDocument" not in text:
        raise SignalError(f"{source}: not a Publication_MarketDocument")
    units = _xml_values(text, "price_Measure_Unit.name")
    currencies = _xml_values(text, "currency_Unit.name")
    if units != {"MWH"}:
        raise SignalError(f"{source}: price_Measure_Unit.name: expected MWH, got {sorted(units)}")
    if len(currencies) != 1:
        raise SignalError(f"{source}: currency_Unit.name: expected one currency, got {sorted(currencies)}")
    currency = currencies.pop()
    try:
        with quiet_xml_parser():
            by_resolution = parse_prices(text)
    except Exception as exc:  # entsoe-py raises whatever bs4/pandas raise on a malformed document
        raise SignalError(f"{source}: malformed document: {type(exc).__name__}: {exc}") from None
    present = {k: v for k, v in by_resolution.items() if len(v)}
    if not present:
        raise SignalError(f"{source}: document holds no prices")
    key = step or min(present, key=lambda k: pd.Timedelta(k))
    if key not in present:
        raise SignalError(f"{source}: step: no {key} series, have {sorted(present)}")
    s = present[key].astype(float).sort_index()
    s.index = pd.DatetimeIndex(s.index).tz_convert("UTC")
    return Signal(s * PER_MWH_TO_PER_KWH, f"{currency}/kWh", kind, source, pd.Timedelta(key))


# -- Nord Pool -------------------------------------------------------------------------------------


def parse_nordpool(
    payload: str | bytes | Mapping[str, Any], area: str, currency: str = "EUR",
    kind: SignalKind = "import_price",
) -> Signal:
    """Nord Pool Data Portal ``DayAheadPrices`` for one delivery area (currency/MWh → per kWh)."""
    source = "nordpool"
    data = _json(payload, source)
    areas = _get(data, "deliveryAreas", source, "")
    if area not in areas:
        raise SignalError(f"{source}: deliveryAreas: no area {area!r}, have {areas!r}")
    got_currency = data.get("currency", currency) if isinstance(data, Mapping) else currency
    if got_currency != currency:
        raise SignalError(f"{source}: currency: expected {currency}, got {got_currency!r}")
    entries = _get(data, "multiAreaEntries", source, "")
    if not isinstance(entries, list) or not entries:
        raise SignalError(f"{source}: multiAreaEntries: empty")
    starts, values = [], []
    for i, e in enumerate(entries):
        where = f"multiAreaEntries[{i}]."
        starts.append(_get(e, "deliveryStart", source, where))
        prices = _get(e, "entryPerArea", source, where)
        values.append(_number(_get(prices, area, source, where + "entryPerArea."), source,
                              f"{where}entryPerArea.{area}") * PER_MWH_TO_PER_KWH)
    index = utc_index(starts, source, "multiAreaEntries[].deliveryStart")
    s = _series(index, values, source)
    return Signal(s, f"{currency}/kWh", kind, source, _resolution(s.index, source))


# -- Octopus Agile ---------------------------------------------------------------------------------


def parse_octopus(
    pages: Iterable[str | bytes | Mapping[str, Any]], vat: bool = True, kind: SignalKind = "import_price"
) -> Signal:
    """Octopus ``standard-unit-rates`` pages (newest first, any order across pages), p/kWh → GBP/kWh,
    including VAT unless ``vat`` is False."""
    source = "octopus"
    field = "value_inc_vat" if vat else "value_exc_vat"
    starts, values = [], []
    for p, page in enumerate(pages):
        data = _json(page, source)
        results = _get(data, "results", source, f"page {p}: ")
        if not isinstance(results, list):
            raise SignalError(f"{source}: page {p}: results: not a list")
        for i, r in enumerate(results):
            where = f"results[{i}]."
            starts.append(_get(r, "valid_from", source, where))
            values.append(_number(_get(r, field, source, where), source, where + field) * PENCE_TO_POUNDS)
    if not starts:
        raise SignalError(f"{source}: results: empty")
    index = utc_index(starts, source, "results[].valid_from")
    s = _series(index, values, source)
    return Signal(s, "GBP/kWh", kind, source, _resolution(s.index, source))


# -- Tibber ----------------------------------------------------------------------------------------


def parse_tibber(payload: str | bytes | Mapping[str, Any], home: int = 0) -> Signal:
    """Tibber ``priceInfo`` (today + tomorrow) → ``total`` (energy + tax) in currency/kWh."""
    source = "tibber"
    data = _json(payload, source)
    try:
        info = data["data"]["viewer"]["homes"][home]["currentSubscription"]["priceInfo"]
    except (KeyError, IndexError, TypeError):
        raise SignalError(
            f"{source}: data.viewer.homes[{home}].currentSubscription.priceInfo: missing"
        ) from None
    rows = list(info.get("today") or []) + list(info.get("tomorrow") or [])
    if not rows:
        raise SignalError(f"{source}: priceInfo.today: empty")
    currencies = {r.get("currency") for r in rows}
    if len(currencies) != 1 or None in currencies:
        raise SignalError(f"{source}: currency: expected one currency, got {sorted(map(str, currencies))}")
    values = [_number(_get(r, "total", source, f"priceInfo[{i}]."), source, f"priceInfo[{i}].total")
              for i, r in enumerate(rows)]
    index = utc_index([r.get("startsAt") for r in rows], source, "priceInfo[].startsAt")
    s = _series(index, values, source)
    return Signal(s, f"{currencies.pop()}/kWh", "import_price", source, _resolution(s.index, source))
