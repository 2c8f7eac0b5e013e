"""What a number or a name in a site config may be: finite, within documented maxima, and names
that end up in file paths or URLs made only of safe characters.

Every config model derives from :class:`ConfigModel`, whose pydantic config refuses NaN and
±infinity in every float field (TOML reads ``nan`` and ``inf`` as floats). The maxima below are
far beyond any site this controller is for, and well inside what the planner solves: the
Guangdong site planned with every one of them at once (a 10 GWh battery, 1 GW everywhere, prices
of ±100,000 per kWh, a demand charge of 1,000,000 per kW) still gives an optimal plan, while
1e308 kWh makes every plan fail.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_POWER_KW = 1e6
"""Largest power rating or limit, kW (1 GW)."""
MAX_ENERGY_KWH = 1e7
"""Largest energy (battery capacity, an EV's need), kWh (10 GWh)."""
MAX_MASS_KG = 1e7
"""Largest hydrogen quantity (tank capacity), kg."""
MAX_PRICE_PER_KWH = 1e5
"""Largest price per kWh either way (tariffs, adders, wear, hydrogen value per kg), site currency."""
MAX_PRICE_PER_KW = 1e6
"""Largest demand charge per kW of the billing period's peak, site currency."""
MAX_MONEY = 1e9
"""Largest single amount (an electrolyser start-up), site currency."""
MAX_CURRENT_A = 1e4
"""Largest charger current, A."""
MAX_HOURS = 8760.0
"""Longest duration given in hours (minimum up and down times)."""
MAX_DAYS = 36500.0
"""Longest retention, days (100 years)."""

SAFE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A name that becomes part of a file path or a URL (the site's state directory, an asset's API
path): a letter or digit, then up to 63 letters, digits, ``_``, ``.`` or ``-``."""


class ConfigModel(BaseModel):
    """Base of every config model: unknown fields refused, frozen, every float finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_SAFE_NAME = re.compile(SAFE_NAME_PATTERN)


def _safe_name(name: str) -> str:
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError("a name that becomes part of a path must be 1-64 letters, digits, '_', "
                         "'.' or '-', start with a letter or digit, and not contain '..'")
    return name


SafeName = Annotated[str, AfterValidator(_safe_name)]

Kw = Annotated[float, Field(ge=0, le=MAX_POWER_KW)]
PositiveKw = Annotated[float, Field(gt=0, le=MAX_POWER_KW)]
PositiveKwh = Annotated[float, Field(gt=0, le=MAX_ENERGY_KWH)]
Kg = Annotated[float, Field(ge=0, le=MAX_MASS_KG)]
PositiveKg = Annotated[float, Field(gt=0, le=MAX_MASS_KG)]
KgPerHour = Annotated[float, Field(ge=0, le=MAX_MASS_KG)]
Price = Annotated[float, Field(ge=-MAX_PRICE_PER_KWH, le=MAX_PRICE_PER_KWH)]
"""Per kWh (or per kg), site currency; may be negative."""
NonNegPrice = Annotated[float, Field(ge=0, le=MAX_PRICE_PER_KWH)]
DemandPrice = Annotated[float, Field(ge=0, le=MAX_PRICE_PER_KW)]
Money = Annotated[float, Field(ge=0, le=MAX_MONEY)]
Hours = Annotated[float, Field(ge=0, le=MAX_HOURS)]
Days = Annotated[float, Field(gt=0, le=MAX_DAYS)]


def _not_empty_path(path: str) -> str:
    if not path.strip():
        raise ValueError("empty path: give one relative to the config file, or an absolute one")
    return path


FilePath = Annotated[str, AfterValidator(_not_empty_path)]
"""A file or directory path (relative to the config file); an empty path would name the config's
own directory."""

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if not host or len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError("not an IP address or a host name")
    return host


HostName = Annotated[str, AfterValidator(_host)]
"""An IPv4 or IPv6 address, or a DNS host name (RFC 1123 labels)."""

MODBUS_TCP_UNIT_IDS = frozenset({0, 255})
"""Unit ids that only Modbus TCP uses besides 1-247: 255 (0xFF) is what the Modbus TCP
implementation guide recommends for a device reached directly, not through a gateway (the Phoenix
CHARX answers on it), and some devices answer on 0. On a serial line 0 is the broadcast address
and 248-255 are reserved."""


def _unit_id(unit: int) -> int:
    if not (1 <= unit <= 247 or unit in MODBUS_TCP_UNIT_IDS):
        raise ValueError("Modbus unit id must be 1-247, or 0 or 255 for a device reached "
                         "directly over Modbus TCP")
    return unit


UnitId = Annotated[int, AfterValidator(_unit_id)]
