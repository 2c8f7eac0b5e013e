"""Price units: which currency a unit string is in and the factor that makes it per kWh."""

from __future__ import annotations

import re

from ems.signals.series import SignalError

SUBUNITS: dict[str, tuple[str, float]] = {"p": ("GBP", 0.01), "ct": ("EUR", 0.01), "fen": ("CNY", 0.01)}
"""Minor currency units: pence, euro cents, fen."""

_UNIT = re.compile(r"^([A-Za-z]+)/(kWh|MWh)$")


def price_unit(unit: str) -> tuple[str, float]:
    """("EUR", 0.001) for "EUR/MWh": the currency and the factor to <currency>/kWh.
    Raises SignalError for anything but <currency or subunit>/kWh or /MWh."""
    m = _UNIT.match(unit.strip())
    if m is None:
        raise SignalError(f"unit {unit!r}: expected <currency>/kWh or <currency>/MWh "
                          f"(e.g. EUR/MWh, CNY/kWh, p/kWh)")
    money, energy = m.groups()
    per_kwh = 0.001 if energy == "MWh" else 1.0
    if money in SUBUNITS:
        currency, factor = SUBUNITS[money]
        return currency, factor * per_kwh
    if not (len(money) == 3 and money.isupper()):
        raise SignalError(f"unit {unit!r}: {money!r} is not an ISO 4217 currency code or one of "
                          f"{sorted(SUBUNITS)}")
    return money, per_kwh
