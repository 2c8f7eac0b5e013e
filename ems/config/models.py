"""Site configuration models (pydantic v2). One TOML file per site under site_configs/.

Units: kW, kWh, kg, gCO2/kWh, money in the site's currency; times of day "HH:MM" local time.
Relative file paths are resolved against the config file's directory. Every number is finite and
within the documented maxima of :mod:`ems.config.bounds`.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ems.config.bounds import (
    MAX_CURRENT_A,
    MAX_HOURS,
    ConfigModel,
    Days,
    DemandPrice,
    FilePath,
    HostName,
    Hours,
    Kg,
    KgPerHour,
    Kw,
    Money,
    NonNegPrice,
    PositiveKg,
    PositiveKw,
    PositiveKwh,
    Price,
    SafeName,
    UnitId,
)
from ems.config.signal_sources import (
    PROVIDER_CARBON_KIND,
    PROVIDER_CURRENCY,
    CarbonKind,
    CarbonProvider,
    PriceSource,
)

_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")

Fraction = Annotated[float, Field(ge=0, le=1)]
Efficiency = Annotated[float, Field(gt=0, le=1)]
Celsius = Annotated[float, Field(ge=-60, le=150)]
"""A cell temperature threshold, °C."""
CellVolts = Annotated[float, Field(ge=0, le=10)]
"""A cell-voltage spread, V."""
DaysKind = Literal["all", "weekdays", "weekends", "holidays"]
"""Which days a window applies on; "holidays" means the dates in the tariff's ``holidays`` list."""


Strict = ConfigModel


FIELD_PROBLEMS = "field_problems"

Loc = tuple[str | int, ...]


def field_problems(problems: list[tuple[Loc, object, str]]) -> PydanticCustomError:
    """One validation error for several problems found by a cross-field check, each with the
    field path (below the model), the bad value and a message; the loader reports each one
    on its own line."""
    summary = "; ".join(f"{'.'.join(map(str, loc))} = {value!r}: {msg}"
                        for loc, value, msg in problems)
    return PydanticCustomError(FIELD_PROBLEMS, "{summary}",
                               {"summary": summary, "problems": problems})


def minutes_of_day(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class TimeWindow(Strict):
    """A daily window in local time; end may be "24:00"; end < start wraps past midnight."""

    start: str
    end: str
    months: list[Annotated[int, Field(ge=1, le=12)]] = Field(default_factory=lambda: list(range(1, 13)))
    days: DaysKind = "all"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"time of day must be HH:MM (00:00..24:00), got {v!r}")
        return v


class TouRule(TimeWindow):
    period: str


class LimitRule(TimeWindow):
    kw: Kw


class FixedTariff(Strict):
    kind: Literal["fixed"]
    price_per_kwh: Price


class TouTariff(Strict):
    """Time-of-use table: later rules override earlier ones; unmatched times are default_period."""

    kind: Literal["tou"]
    default_period: str
    prices: dict[str, Price]
    rules: list[TouRule] = Field(default_factory=list)
    holidays: list[date] = Field(default_factory=list)
    source: str | None = None

    @model_validator(mode="after")
    def _periods_priced(self) -> TouTariff:
        periods: list[tuple[Loc, str]] = [(("default_period",), self.default_period)]
        periods += [(("rules", i, "period"), r.period) for i, r in enumerate(self.rules)]
        problems: list[tuple[Loc, object, str]] = [
            (loc, name, f"period has no price in prices {sorted(self.prices)}")
            for loc, name in periods if name not in self.prices]
        if problems:
            raise field_problems(problems)
        return self


class PriceAdjustments(Strict):
    """Turns a market price into what the site pays (or is paid), per kWh in the site currency:
    (market × exchange_rate + adder_per_kwh) × (1 + tax_fraction)."""

    adder_per_kwh: Price = 0.0
    """Fixed amount per kWh on top (grid fees, levies), site currency; may be negative."""
    tax_fraction: Annotated[float, Field(ge=0, le=10)] = 0.0
    """Proportional tax (VAT) applied after the adder, e.g. 0.19."""
    exchange_rate: Annotated[float, Field(gt=0, le=1e6)] | None = None
    """Site currency per unit of the source's currency; needed when the two differ."""


class SeriesTariff(PriceAdjustments):
    """Prices from a CSV file (timestamp_utc + column). ``unit`` is "<currency>/kWh" or
    "<currency>/MWh" ("p/kWh" is GBP pence, "ct/kWh" EUR cents); none means site currency/kWh."""

    kind: Literal["series"]
    file: FilePath
    column: str = "price_per_kwh"
    unit: str | None = None

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str | None) -> str | None:
        if v is not None:
            from ems.signals.units import price_unit

            price_unit(v)
        return v


class DynamicTariff(PriceAdjustments):
    """Prices fetched from a market or supplier API (``ems signals fetch``), kept in the site's
    signal cache; horizons past the published prices are filled by persistence."""

    kind: Literal["dynamic"]
    source: PriceSource


Tariff = Annotated[FixedTariff | TouTariff | SeriesTariff | DynamicTariff, Field(discriminator="kind")]


class DemandCharge(Strict):
    price_per_kw: DemandPrice
    """Per kW of the billing period's maximum import (step average)."""
    billing: Literal["monthly"] = "monthly"
    windows: list[TimeWindow] = Field(default_factory=list)
    """Only import in these windows counts; empty means all hours."""
    months: list[Annotated[int, Field(ge=1, le=12)]] | None = None
    """Months (local) the charge applies in; None means every month."""
    name: str | None = None
    """Label for reports (e.g. "facility", "on_peak")."""


class CarbonSource(Strict):
    """Grid carbon intensity (gCO2/kWh): a CSV file (``file`` + ``column``) or a live ``source``.

    ``kind`` says what it measures: "average" (the mix; for accounting) or "marginal" (the
    plant that answers a change in demand; for shifting decisions)."""

    kind: CarbonKind
    file: FilePath | None = None
    column: str = "carbon_g_per_kwh"
    source: CarbonProvider | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CarbonSource:
        if (self.file is None) == (self.source is None):
            raise ValueError("give exactly one of file or source")
        if self.source is not None:
            measures = PROVIDER_CARBON_KIND[self.source.provider]
            if measures != self.kind:
                raise field_problems([(("kind",), self.kind, f"{self.source.provider} gives {measures} "
                                       f"intensity; set kind = {measures!r}")])
        return self


class Device(Strict):
    """Where the device layer finds this asset; ignored by the planner."""

    profile: Annotated[str, Field(min_length=1)]
    """A bundled profile (drivers/profiles/) or a SunSpec one (sunspec_inverter, sunspec_battery)."""
    host: HostName = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    unit_id: UnitId = 1
    """Modbus unit id: 1-247; 0 or 255 only for a device reached directly over Modbus TCP."""
    watchdog_s: Annotated[float, Field(gt=0, le=3600)] | None = None
    """Seconds without a command after which the device goes to its safe state, for a device whose
    watchdog the service arms (the profile's ``[watchdog_arm]``, e.g. the Enapter heartbeat);
    default: the profile's value."""


class GridConfig(Strict):
    import_limit_kw: Kw
    export_limit_kw: Kw
    import_limit_rules: list[LimitRule] = Field(default_factory=list)
    export_limit_rules: list[LimitRule] = Field(default_factory=list)
    tariff: Tariff
    export_tariff: Tariff = FixedTariff(kind="fixed", price_per_kwh=0.0)
    demand_charge: DemandCharge | None = None
    """A single demand charge (kept for existing configs); it is also the only entry of
    ``demand_charges``, which every consumer reads."""
    demand_charges: list[DemandCharge] = Field(default_factory=list)
    """Several demand charges (e.g. a flat monthly maximum plus an on-peak-window one), each
    billed on its own peak."""
    carbon: list[CarbonSource]
    """One signal, or two of different kinds (TOML: ``[grid.carbon]`` or ``[[grid.carbon]]``)."""
    device: Device | None = None

    @field_validator("carbon", mode="before")
    @classmethod
    def _carbon_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v

    @field_validator("carbon")
    @classmethod
    def _carbon_kinds(cls, v: list[CarbonSource]) -> list[CarbonSource]:
        kinds = [c.kind for c in v]
        if not 1 <= len(v) <= 2 or len(set(kinds)) != len(kinds):
            raise ValueError(f"give one carbon signal, or one average and one marginal; got kinds {kinds}")
        return v

    def carbon_of(self, kind: CarbonKind) -> CarbonSource | None:
        return next((c for c in self.carbon if c.kind == kind), None)

    @model_validator(mode="before")
    @classmethod
    def _expand_tou_tables(cls, data: Any, info: ValidationInfo) -> Any:
        """A built-in table (kind "tou_table") or a URDB rate file (kind "urdb") becomes the
        "tou" tariff it stands for (a URDB rate's demand charges fill ``demand_charges`` when the
        config gives none); the single ``demand_charge`` is normalised into ``demand_charges``."""
        if not isinstance(data, dict):
            return data
        from ems.signals.tou_tables import TableError, expand_table
        from ems.signals.urdb import UrdbError, expand_urdb

        out = dict(data)
        for name in ("tariff", "export_tariff"):
            value = out.get(name)
            if isinstance(value, dict) and value.get("kind") == "tou_table":
                try:
                    out[name] = expand_table(value, name)
                except TableError as exc:
                    message = str(exc).split(": ", 1)[1]
                    raise field_problems([((name, *exc.field), exc.value, message)]) from None
            elif isinstance(value, dict) and value.get("kind") == "urdb":
                context = info.context if isinstance(info.context, dict) else {}
                try:
                    tariff, charges = expand_urdb(value, name, context.get("base_dir"))
                except UrdbError as exc:
                    raise field_problems([((name, *exc.field), exc.value, exc.reason)]) from None
                out[name] = tariff
                if name == "tariff" and charges and not out.get("demand_charge") \
                        and not out.get("demand_charges"):
                    out["demand_charges"] = charges
        if out.get("demand_charge") is not None:
            if out.get("demand_charges"):
                raise field_problems([(("demand_charge",), out["demand_charge"],
                                       "give demand_charge or demand_charges, not both")])
            out["demand_charges"] = [out["demand_charge"]]
        return out


class SiteInfo(Strict):
    name: SafeName
    """Also the name of the site's state directory (see ``state_dir``): letters, digits, ``_``,
    ``.`` and ``-`` only, no ``..``."""
    timezone: str
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]
    currency: str = "EUR"
    data_start: str | None = None
    """First local day of the site's data files, YYYY-MM-DD."""
    data_end: str | None = None
    """Last local day of the site's data files, YYYY-MM-DD (inclusive)."""
    state_dir: FilePath | None = None
    """Where the site's records live (signal cache, store); relative to this file. Default:
    $EMS_STATE_DIR/<name>, else state/<name> next to this file."""

    @field_validator("data_start", "data_end", mode="before")
    @classmethod
    def _iso_day(cls, v: Any) -> Any:
        if isinstance(v, date) and not isinstance(v, datetime):
            return v.isoformat()  # a TOML date (unquoted)
        if isinstance(v, str):
            try:
                if not _ISO_DAY.match(v):
                    raise ValueError
                date.fromisoformat(v)
            except ValueError:
                raise ValueError("not a date (expected YYYY-MM-DD, e.g. 2025-01-01)") from None
        return v

    @model_validator(mode="after")
    def _period(self) -> SiteInfo:
        if self.data_start is not None and self.data_end is not None and self.data_end < self.data_start:
            raise field_problems([(("data_end",), self.data_end,
                                   f"is before data_start {self.data_start}")])
        return self

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {v!r}") from exc
        return v


class Planning(Strict):
    horizon_hours: Annotated[float, Field(gt=0, le=168)] = 48
    step_minutes: Literal[5, 10, 15, 20, 30, 60] = 15
    replan_every_minutes: Annotated[int, Field(gt=0, le=1440)] = 60
    objective: Literal["cost", "carbon_price", "carbon"] = "cost"
    carbon_price_per_kg: NonNegPrice = 0.0
    carbon_signal: CarbonKind | None = None
    """Which grid.carbon signal the optimiser weighs; none: marginal when configured (it is
    what shifting demand changes), else the only one. Reports account emissions with both."""
    time_limit_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    mip_rel_gap: Annotated[float, Field(ge=0, lt=1)] = 0.001
    integer_horizon_hours: Annotated[float, Field(ge=0, le=168)] | None = 12.0
    """On/off decisions are exact (binary) this far ahead and relaxed beyond (re-planned
    before they happen); None: exact over the whole horizon."""

    @model_validator(mode="after")
    def _whole_steps(self) -> Planning:
        if (self.horizon_hours * 60) % self.step_minutes:
            raise ValueError(f"horizon_hours {self.horizon_hours} is not a whole number of "
                             f"{self.step_minutes}-minute steps")
        if self.replan_every_minutes % self.step_minutes:
            raise ValueError(f"replan_every_minutes {self.replan_every_minutes} is not a multiple "
                             f"of step_minutes {self.step_minutes}")
        return self


class PvConfig(Strict):
    """PV from bundled weather (pvlib) with its geometry, or from a per-kWp series file."""

    name: SafeName
    kwp: PositiveKw
    tilt_deg: Annotated[float, Field(ge=0, le=90)] = 20.0
    azimuth_deg: Annotated[float, Field(ge=0, lt=360)] = 180.0
    system_loss_fraction: Fraction = 0.14
    weather_file: FilePath | None = None
    series_file: FilePath | None = None
    series_column: str = "pv_kw_per_kwp"
    curtailable: bool = True
    device: Device | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PvConfig:
        if (self.weather_file is None) == (self.series_file is None):
            raise ValueError("give exactly one of weather_file or series_file")
        return self


class BatterySafety(Strict):
    """Early-warning and stop thresholds the safety guard (ems/control/safety.py) applies to a
    battery's measured cell temperatures (°C), cell-voltage spread (V), state of health (%) and
    BMS alarms. Defaults are for LFP; see ems/control/safety.py for where each comes from.

    "Derate" limits charge and discharge power to ``derate_fraction`` of their ratings; "stop"
    means 0 kW. An alarm clears only when its value is back by the hysteresis."""

    derate_above_c: Celsius = 45.0
    """Highest cell temperature above which power is derated (warning)."""
    stop_above_c: Celsius = 55.0
    """Highest cell temperature above which the battery is stopped (critical)."""
    no_charge_below_c: Celsius = 0.0
    """Lowest cell temperature below which charging is blocked (lithium plating)."""
    temperature_hysteresis_c: Annotated[float, Field(ge=0, le=50)] = 3.0
    spread_derate_v: CellVolts = 0.15
    """Cell-voltage spread (max − min) at or above which power is derated (warning)."""
    spread_stop_v: CellVolts = 0.30
    """Cell-voltage spread at or above which the battery is stopped (critical)."""
    spread_hysteresis_v: CellVolts = 0.02
    soh_derate_below_pct: Annotated[float, Field(ge=0, le=100)] = 70.0
    """State of health below which power is derated (warning)."""
    soh_hysteresis_pct: Annotated[float, Field(ge=0, le=100)] = 1.0
    derate_fraction: Fraction = 0.5
    stop_on_bms_alarm: bool = True
    """Any alarm the BMS reports stops the battery (critical)."""

    @model_validator(mode="after")
    def _ordered(self) -> BatterySafety:
        problems: list[tuple[Loc, object, str]] = []
        if self.derate_above_c >= self.stop_above_c:
            problems.append((("derate_above_c",), self.derate_above_c,
                             f"must be below stop_above_c {self.stop_above_c}"))
        if self.no_charge_below_c >= self.derate_above_c:
            problems.append((("no_charge_below_c",), self.no_charge_below_c,
                             f"must be below derate_above_c {self.derate_above_c}"))
        if self.spread_derate_v >= self.spread_stop_v:
            problems.append((("spread_derate_v",), self.spread_derate_v,
                             f"must be below spread_stop_v {self.spread_stop_v}"))
        if problems:
            raise field_problems(problems)
        return self


class BatteryConfig(Strict):
    name: SafeName
    chemistry: str = "LFP"
    capacity_kwh: PositiveKwh
    max_charge_kw: PositiveKw
    max_discharge_kw: PositiveKw
    charge_efficiency: Efficiency = 0.95
    discharge_efficiency: Efficiency = 0.95
    soc_min_fraction: Fraction = 0.10
    soc_max_fraction: Fraction = 0.90
    initial_soc_fraction: Fraction = 0.50
    degradation_cost_per_kwh: NonNegPrice = 0.0
    allow_grid_charging: bool = True
    safety: BatterySafety = BatterySafety()
    device: Device | None = None

    @model_validator(mode="after")
    def _window(self) -> BatteryConfig:
        if self.soc_min_fraction > self.soc_max_fraction:
            raise field_problems([(("soc_min_fraction",), self.soc_min_fraction,
                                   f"is above soc_max_fraction {self.soc_max_fraction}")])
        return self


class EvChargerConfig(Strict):
    """Power from max_kw/min_kw, or from current x phases x voltage."""

    name: SafeName
    max_kw: PositiveKw | None = None
    min_kw: Kw | None = None
    max_current_a: Annotated[float, Field(gt=0, le=MAX_CURRENT_A)] | None = None
    min_current_a: Annotated[float, Field(ge=0, le=MAX_CURRENT_A)] | None = None
    phases: Literal[1, 3] = 3
    voltage_v: Annotated[float, Field(gt=0, le=1500)] = 230.0
    """Phase voltage (AC) or the DC voltage, V."""
    efficiency: Efficiency = 0.92
    v2g: bool = False
    max_discharge_kw: Kw = 0.0
    device: Device | None = None

    @model_validator(mode="after")
    def _power(self) -> EvChargerConfig:
        if self.max_kw is None and self.max_current_a is None:
            raise ValueError("give max_kw or max_current_a")
        if self.v2g and self.max_discharge_kw <= 0:
            raise field_problems([(("max_discharge_kw",), self.max_discharge_kw,
                                   "v2g = true needs max_discharge_kw > 0")])
        if self.min_power_kw > self.max_power_kw:
            field = "min_kw" if self.min_kw is not None else "min_current_a"
            raise field_problems([((field,), getattr(self, field),
                                   f"minimum power {self.min_power_kw:.2f} kW exceeds the maximum "
                                   f"{self.max_power_kw:.2f} kW")])
        return self

    @property
    def max_power_kw(self) -> float:
        if self.max_kw is not None:
            return self.max_kw
        assert self.max_current_a is not None
        return self.max_current_a * self.phases * self.voltage_v / 1000.0

    @property
    def min_power_kw(self) -> float:
        if self.min_kw is not None:
            return self.min_kw
        if self.min_current_a is not None:
            return self.min_current_a * self.phases * self.voltage_v / 1000.0
        return 0.0


class DailySession(Strict):
    chargers: list[str]
    arrive: str
    depart: str
    energy_kwh: PositiveKwh
    days: DaysKind = "all"

    @field_validator("arrive", "depart")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"time of day must be HH:MM, got {v!r}")
        return v


class DailySessions(Strict):
    """The same sessions every (week)day; depart before arrive means the next day."""

    kind: Literal["daily"]
    schedule: list[DailySession]


class FileSessions(Strict):
    """Recorded sessions: CSV with session_id, station_id, arrival_utc, departure_utc, energy_kwh.

    Stations are mapped to chargers by `station_map`, else to the charger of the same name,
    else in order of first appearance onto the configured chargers (round robin)."""

    kind: Literal["file"]
    file: FilePath
    station_map: dict[str, str] = Field(default_factory=dict)


EvSessions = Annotated[DailySessions | FileSessions, Field(discriminator="kind")]


class ElectrolyserConfig(Strict):
    name: SafeName
    rated_kw: PositiveKw
    min_load_fraction: Fraction = 0.1
    kwh_per_kg: Annotated[float, Field(gt=33.3, le=1000)] = 53.0
    """Electricity per kg of hydrogen; must exceed the LHV (33.33 kWh/kg)."""
    standby_kw: Kw = 0.0
    startup_cost: Money = 0.0
    min_up_hours: Hours = 0.0
    min_down_hours: Hours = 0.0
    tank: str
    device: Device | None = None


class HydrogenTankConfig(Strict):
    name: SafeName
    capacity_kg: PositiveKg
    floor_kg: Kg = 0.0
    initial_kg: Kg = 0.0
    terminal_value_per_kg: NonNegPrice = 0.0
    """Value of hydrogen left in the tank at the horizon end (money per kg)."""

    @model_validator(mode="after")
    def _levels(self) -> HydrogenTankConfig:
        problems: list[tuple[Loc, object, str]] = [
            ((f,), getattr(self, f), f"exceeds capacity_kg {self.capacity_kg}")
            for f in ("floor_kg", "initial_kg") if getattr(self, f) > self.capacity_kg]
        if problems:
            raise field_problems(problems)
        return self


class OfftakeWindow(TimeWindow):
    kg_per_hour: KgPerHour


class HydrogenOfftakeConfig(Strict):
    """Daily schedule of kg/hour windows, or a series file (kg per hour)."""

    name: SafeName
    tank: str
    schedule: list[OfftakeWindow] = Field(default_factory=list)
    file: FilePath | None = None
    column: str = "kg_per_hour"

    @model_validator(mode="after")
    def _one_source(self) -> HydrogenOfftakeConfig:
        if bool(self.schedule) == (self.file is not None):
            raise ValueError("give exactly one of schedule or file")
        return self


class LoadConfig(Strict):
    name: SafeName
    file: FilePath
    column: str = "load_kw"
    scale: Annotated[float, Field(ge=0, le=1e6)] = 1.0
    device: Device | None = None


class StoreConfig(Strict):
    """Where the service keeps its records. ``url`` is an SQLAlchemy URL (e.g.
    "postgresql+psycopg://ems@db/ems"); none means SQLite at <state_dir>/ems.sqlite."""

    url: str | None = None
    url_env: str = "EMS_STORE_URL"
    """Environment variable that, when set, overrides ``url`` (keeps passwords out of the file)."""
    telemetry_every_s: Annotated[float, Field(gt=0, le=86400)] = 60.0
    telemetry_retention_days: Days = 400.0
    """Days telemetry is kept (as 15-minute aggregates after ``raw_telemetry_days``)."""
    raw_telemetry_days: Days = 7.0
    """Days raw telemetry is kept before it is folded into 15-minute mean/min/max."""
    plan_retention_days: Days = 400.0
    setpoint_retention_days: Days = 90.0
    """Days the audit trail of setpoint writes is kept."""
    plan_body_days: Days = 7.0
    """Days a plan keeps its per-step series; later only its headline figures, costs and
    relaxed limits."""


class ServiceConfig(Strict):
    """The running service (`ems run`)."""

    dispatch_every_s: Annotated[float, Field(ge=1, le=5)] = 2.0
    poll_every_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    stale_after_s: Annotated[float, Field(gt=0, le=86400)] = 5.0
    ev_default_energy_kwh: PositiveKwh = 20.0
    """Energy a vehicle wants when nobody says (API); kWh."""
    ev_default_dwell_hours: Annotated[float, Field(gt=0, le=MAX_HOURS)] = 8.0
    api_host: HostName = "127.0.0.1"
    api_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    api_token_env: str = "EMS_API_TOKEN"
    """Environment variable with the bearer token API writes need (at least 16 characters)."""
    api_read_token_required: bool = False
    """Reads (``GET /status``, ``/plan``, ``/history``, ``/alarms``, ``/kpis``, ``/metrics``) need
    the token too; by default they are open on the bound address."""
    forecast: Literal["series", "model"] = "series"
    """What plans take as PV and load: "series", the configured series files as they stand (a
    site can keep them updated from an external forecaster); "model", forecasts the service makes
    from what it measured (`ems.runtime.forecasts`)."""
    plan_import_margin_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.05
    """Plans keep the grid import this fraction under the import limit: headroom for forecast
    error, which the controller covers from the meter with the batteries (the limit itself is
    held at its full value)."""
    previous_plan_valid_h: Annotated[float, Field(ge=0, le=48)] = 2.0
    """After a failed or late plan the service goes on following the previous plan, shifted to
    now, for at most this many hours from its first step (while it still covers now); only then
    does it fall back to the rules."""
    signals_every_s: Annotated[float, Field(ge=60, le=7 * 86400)] = 1800.0
    """How often live tariff and carbon sources are fetched (site seconds); new data re-plans."""


class SiteConfig(Strict):
    site: SiteInfo
    planning: Planning = Planning()
    grid: GridConfig
    pv: list[PvConfig] = Field(default_factory=list)
    battery: list[BatteryConfig] = Field(default_factory=list)
    ev_charger: list[EvChargerConfig] = Field(default_factory=list)
    ev_sessions: EvSessions | None = None
    electrolyser: list[ElectrolyserConfig] = Field(default_factory=list)
    hydrogen_tank: list[HydrogenTankConfig] = Field(default_factory=list)
    hydrogen_offtake: list[HydrogenOfftakeConfig] = Field(default_factory=list)
    load: list[LoadConfig] = Field(default_factory=list)
    store: StoreConfig = StoreConfig()
    service: ServiceConfig = ServiceConfig()

    @model_validator(mode="after")
    def _references(self) -> SiteConfig:
        groups: dict[str, list[str]] = {
            "pv": [p.name for p in self.pv], "battery": [b.name for b in self.battery],
            "ev_charger": [c.name for c in self.ev_charger],
            "electrolyser": [e.name for e in self.electrolyser],
            "hydrogen_tank": [t.name for t in self.hydrogen_tank],
            "hydrogen_offtake": [o.name for o in self.hydrogen_offtake],
            "load": [ld.name for ld in self.load],
        }
        problems: list[tuple[Loc, object, str]] = []
        seen: dict[str, str] = {}
        for group, names in groups.items():
            for i, name in enumerate(names):
                if name == "grid":
                    problems.append(((group, i, "name"), name, "name is reserved for the grid"))
                elif name in seen:
                    problems.append(((group, i, "name"), name, f"asset name already used by "
                                     f"{seen[name]} (names must be unique)"))
                else:
                    seen[name] = f"{group}[{i}]"
        tanks = set(groups["hydrogen_tank"])
        users_of_tanks = (("electrolyser", self.electrolyser),
                          ("hydrogen_offtake", self.hydrogen_offtake))
        for group, users in users_of_tanks:
            for i, u in enumerate(users):
                if u.tank not in tanks:
                    problems.append(((group, i, "tank"), u.tank,
                                     f"not a hydrogen_tank (have {sorted(tanks)})"))
        chargers = set(groups["ev_charger"])
        if isinstance(self.ev_sessions, DailySessions):
            for i, s in enumerate(self.ev_sessions.schedule):
                for j, c in enumerate(s.chargers):
                    if c not in chargers:
                        problems.append((("ev_sessions", "schedule", i, "chargers", j), c,
                                         f"not an ev_charger (have {sorted(chargers)})"))
        problems += self._signal_problems()
        if problems:
            raise field_problems(problems)
        if self.ev_sessions is not None and not chargers:
            raise ValueError("ev_sessions given but no ev_charger configured")
        return self

    def _signal_problems(self) -> list[tuple[Loc, object, str]]:
        problems: list[tuple[Loc, object, str]] = []
        wanted = self.planning.carbon_signal
        if wanted is not None and self.grid.carbon_of(wanted) is None:
            have = [c.kind for c in self.grid.carbon]
            problems.append((("planning", "carbon_signal"), wanted,
                             f"no {wanted} signal in grid.carbon (have {have})"))
        for name in ("tariff", "export_tariff"):
            tariff = getattr(self.grid, name)
            if not isinstance(tariff, DynamicTariff) or tariff.exchange_rate is not None:
                continue
            src = tariff.source
            currency = getattr(src, "currency", None) or PROVIDER_CURRENCY.get(src.provider)
            if currency is not None and currency != self.site.currency:
                problems.append((("grid", name, "exchange_rate"), None,
                                 f"{src.provider} prices are in {currency} but site.currency is "
                                 f"{self.site.currency}: give {self.site.currency} per {currency}"))
        return problems

    @property
    def planning_carbon(self) -> CarbonSource:
        """The carbon signal the optimiser weighs (see Planning.carbon_signal)."""
        kind = self.planning.carbon_signal
        if kind is None:
            kind = "marginal" if self.grid.carbon_of("marginal") else self.grid.carbon[0].kind
        found = self.grid.carbon_of(kind)
        assert found is not None
        return found
