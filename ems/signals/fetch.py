"""Fetch one configured live signal now: build the provider's request, call it, parse the reply.

Every function takes ``get`` (``ems.signals.http.get`` by default) so tests can point the
providers' ``base_url`` at a local server. The window asked for is yesterday to the end of
tomorrow (UTC days), which holds the published day-ahead prices and recent history for
persistence forecasts.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from ems.config.signal_sources import (
    CarbonProvider,
    ElectricityMapsCarbon,
    EntsoeGenerationCarbon,
    EntsoePrices,
    NordPoolPrices,
    OctopusPrices,
    PriceSource,
    TibberPrices,
    UkCarbonIntensity,
    WattTimeCarbon,
)
from ems.signals import carbon, prices
from ems.signals.http import api_key
from ems.signals.http import get as http_get
from ems.signals.series import Signal, SignalError, SignalKind, combine

Get = Callable[..., bytes]


def fetch_window(now: datetime) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start of yesterday, end of tomorrow) in UTC."""
    today = pd.Timestamp(now).tz_convert("UTC").floor("D")
    return today - pd.Timedelta(days=1), today + pd.Timedelta(days=2)


def _url(base: str, path: str = "", **params: Any) -> str:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return f"{base.rstrip('/')}{path}" + (f"?{query}" if query else "")


def _entsoe_eic(area: str) -> str:
    from entsoe.mappings import lookup_area

    try:
        return str(lookup_area(area).code)
    except (ValueError, KeyError):
        raise SignalError(f"entsoe: area {area!r} is not a bidding zone entsoe-py knows") from None


def _entsoe_period(t: pd.Timestamp) -> str:
    return t.strftime("%Y%m%d%H%M")


def fetch_prices(src: PriceSource, kind: SignalKind, now: datetime, get: Get = http_get) -> Signal:
    """Import or export prices (``kind``) from ``src`` in the source's currency per kWh."""
    start, end = fetch_window(now)
    if isinstance(src, EntsoePrices):
        eic = _entsoe_eic(src.area)
        url = _url(src.base_url, securityToken=api_key(src.api_key_env), documentType="A44",
                   in_Domain=eic, out_Domain=eic, periodStart=_entsoe_period(start),
                   periodEnd=_entsoe_period(end))
        return prices.parse_entsoe_a44(get(url), kind=kind)
    if isinstance(src, NordPoolPrices):
        return _nordpool(src, kind, pd.Timestamp(now), get)
    if isinstance(src, OctopusPrices):
        url = _url(src.base_url, f"/products/{src.product}/electricity-tariffs/{src.tariff_code}"
                   "/standard-unit-rates/", period_from=start.strftime("%Y-%m-%dT%H:%MZ"),
                   period_to=end.strftime("%Y-%m-%dT%H:%MZ"))
        pages: list[bytes] = []
        while url and len(pages) < 50:
            page = get(url)
            pages.append(page)
            try:
                url = json.loads(page).get("next")
            except (ValueError, AttributeError):
                break  # the parser reports what is wrong with this page
        return prices.parse_octopus(pages, vat=src.include_vat, kind=kind)
    assert isinstance(src, TibberPrices)
    if kind != "import_price":
        raise SignalError("tibber: gives import prices only; use another source for export")
    query = ("{viewer{homes{currentSubscription{priceInfo{"
             "today{total energy tax startsAt currency} tomorrow{total energy tax startsAt currency}}}}}}")
    body = json.dumps({"query": query}).encode()
    headers = {"Authorization": f"Bearer {api_key(src.token_env)}", "Content-Type": "application/json"}
    return prices.parse_tibber(get(src.base_url, headers=headers, body=body), home=src.home)


def _nordpool(src: NordPoolPrices, kind: SignalKind, now: pd.Timestamp, get: Get) -> Signal:
    """One request per delivery day (CET): yesterday, today and tomorrow; a day not published
    yet (empty reply) is skipped."""
    today = now.tz_convert("Europe/Oslo").normalize()
    days = [today + pd.Timedelta(days=d) for d in (-1, 0, 1)]
    out: Signal | None = None
    problems = []
    for day in days:
        url = _url(src.base_url, date=day.strftime("%Y-%m-%d"), market="DayAhead",
                   deliveryArea=src.area, currency=src.currency)
        body = get(url)
        if not body.strip():
            continue
        try:
            part = prices.parse_nordpool(body, src.area, src.currency, kind=kind)
        except SignalError as exc:
            problems.append(f"{day:%Y-%m-%d}: {exc}")
            continue
        out = part if out is None else combine(out, part)
    if out is None:
        raise SignalError("nordpool: no prices for " + (", ".join(problems) or "any day asked for"))
    return out


def fetch_carbon(src: CarbonProvider, now: datetime, get: Get = http_get) -> Signal:
    """Carbon intensity (gCO2/kWh) from ``src``: recent history plus the forecast where given."""
    start, end = fetch_window(now)
    if isinstance(src, UkCarbonIntensity):
        frm, to = start.strftime("%Y-%m-%dT%H:%MZ"), end.strftime("%Y-%m-%dT%H:%MZ")
        if src.region_id is None:
            return carbon.parse_uk_intensity(get(_url(src.base_url, f"/intensity/{frm}/{to}")))
        url = _url(src.base_url, f"/regional/intensity/{frm}/{to}/regionid/{src.region_id}")
        return carbon.parse_uk_regional(get(url), src.region_id)
    if isinstance(src, ElectricityMapsCarbon):
        headers = {"auth-token": api_key(src.token_env)}
        history = carbon.parse_electricity_maps(
            get(_url(src.base_url, "/carbon-intensity/history", zone=src.zone), headers=headers))
        forecast = carbon.parse_electricity_maps(
            get(_url(src.base_url, "/carbon-intensity/forecast", zone=src.zone), headers=headers))
        return combine(history, forecast)
    if isinstance(src, WattTimeCarbon):
        headers = {"Authorization": f"Bearer {api_key(src.token_env)}"}
        url = _url(src.base_url, "/forecast", region=src.region, signal_type="co2_moer")
        return carbon.parse_watttime(get(url, headers=headers))
    assert isinstance(src, EntsoeGenerationCarbon)
    eic = _entsoe_eic(src.area)
    now_ts = pd.Timestamp(now).tz_convert("UTC").floor("h")
    url = _url(src.base_url, securityToken=api_key(src.api_key_env), documentType="A75",
               processType="A16", in_Domain=eic, periodStart=_entsoe_period(start),
               periodEnd=_entsoe_period(min(end, now_ts + timedelta(hours=1))))
    return carbon.parse_entsoe_generation(get(url))
