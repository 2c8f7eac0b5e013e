"""Where live prices and carbon intensity come from: one model per provider.

API keys are never in the config: each provider names the environment variable that holds it.
``base_url`` defaults to the provider's public API; a test or a proxy may point it elsewhere.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ems.config.bounds import ConfigModel

CarbonKind = Literal["average", "marginal"]


_Source = ConfigModel


class EntsoePrices(_Source):
    """ENTSO-E Transparency day-ahead prices (A44), EUR/MWh."""

    provider: Literal["entsoe"]
    area: str
    """Bidding zone as entsoe-py names it (e.g. "DE_LU", "NL") or its EIC code."""
    api_key_env: str = "ENTSOE_API_KEY"
    base_url: str = "https://web-api.tp.entsoe.eu/api"


class NordPoolPrices(_Source):
    """Nord Pool Data Portal day-ahead prices, <currency>/MWh."""

    provider: Literal["nordpool"]
    area: str
    currency: str = "EUR"
    base_url: str = "https://dataportal-api.nordpoolgroup.com/api/DayAheadPrices"


class OctopusPrices(_Source):
    """Octopus Energy (GB) unit rates, e.g. Agile (import) or Agile Outgoing (export), p/kWh."""

    provider: Literal["octopus"]
    product: str
    """Product code, e.g. "AGILE-24-10-01"."""
    tariff_code: str
    """Tariff code with the GSP region letter, e.g. "E-1R-AGILE-24-10-01-C"."""
    include_vat: bool = True
    base_url: str = "https://api.octopus.energy/v1"


class TibberPrices(_Source):
    """Tibber GraphQL price info (today and tomorrow), total price per kWh."""

    provider: Literal["tibber"]
    token_env: str = "TIBBER_TOKEN"
    home: Annotated[int, Field(ge=0)] = 0
    base_url: str = "https://api.tibber.com/v1-beta/gql"


PriceSource = Annotated[EntsoePrices | NordPoolPrices | OctopusPrices | TibberPrices,
                        Field(discriminator="provider")]


class UkCarbonIntensity(_Source):
    """National Grid ESO Carbon Intensity API (GB), average gCO2/kWh, 48 h forecast.

    ``region_id`` 1-17 selects a DNO region (regional API); none means national."""

    provider: Literal["uk_carbon_intensity"]
    region_id: Annotated[int, Field(ge=1, le=17)] | None = None
    base_url: str = "https://api.carbonintensity.org.uk"


class ElectricityMapsCarbon(_Source):
    """Electricity Maps carbon intensity (lifecycle average) for a zone: forecast and history."""

    provider: Literal["electricitymaps"]
    zone: str
    token_env: str = "ELECTRICITYMAPS_TOKEN"
    base_url: str = "https://api.electricitymap.org/v3"


class WattTimeCarbon(_Source):
    """WattTime v3 marginal operating emissions rate (MOER) forecast for a balancing region."""

    provider: Literal["watttime"]
    region: str
    token_env: str = "WATTTIME_TOKEN"
    base_url: str = "https://api.watttime.org/v3"


class EntsoeGenerationCarbon(_Source):
    """Average intensity from the ENTSO-E actual generation mix (A75) and per-fuel factors."""

    provider: Literal["entsoe_generation"]
    area: str
    api_key_env: str = "ENTSOE_API_KEY"
    base_url: str = "https://web-api.tp.entsoe.eu/api"


CarbonProvider = Annotated[
    UkCarbonIntensity | ElectricityMapsCarbon | WattTimeCarbon | EntsoeGenerationCarbon,
    Field(discriminator="provider"),
]

PROVIDER_CARBON_KIND: dict[str, CarbonKind] = {
    "uk_carbon_intensity": "average",
    "electricitymaps": "average",
    "watttime": "marginal",
    "entsoe_generation": "average",
}
"""What each live carbon provider measures; a config that labels it otherwise is rejected."""

PROVIDER_CURRENCY: dict[str, str] = {"octopus": "GBP", "entsoe": "EUR"}
"""Currency of providers whose prices are always in one currency."""
