"""Built-in time-of-use tables, each with its official source, expanded into a ``tou`` tariff.

A site picks one with ``tariff = { kind = "tou_table", table = "guangdong_2021",
flat_price_per_kwh = 0.70 }``: prices are the table's ratios × the flat price, unless ``prices``
gives a period's price directly (required where the source fixes no ratio). Local time; "holidays"
rules apply on the dates listed in the tariff's ``holidays`` (public holidays, local dates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUMMER_WINTER_ZJ = [1, 7, 8, 12]
SPRING_AUTUMN_ZJ = [2, 3, 4, 5, 6, 9, 10, 11]
SUMMER_WINTER_JS = [6, 7, 8, 12, 1, 2]
SPRING_AUTUMN_JS = [3, 4, 5, 9, 10, 11]


def _rule(
    period: str, start: str, end: str, months: list[int] | None = None, days: str = "all"
) -> dict[str, Any]:
    rule: dict[str, Any] = {"period": period, "start": start, "end": end, "days": days}
    if months is not None:
        rule["months"] = months
    return rule


@dataclass(frozen=True)
class TouTable:
    source: str
    default_period: str
    rules: list[dict[str, Any]]
    ratios: dict[str, float] = field(default_factory=dict)
    """Price of each period ÷ the flat price; a period missing here needs its price in config."""
    holidays: list[str] = field(default_factory=list)
    """Public-holiday dates (local) the table's "holidays" rules apply on, where the source fixes them."""
    prices: dict[str, float] = field(default_factory=dict)
    """Published prices per kWh (tables that fix absolute prices rather than ratios)."""


TABLES: dict[str, TouTable] = {
    "guangdong_2021": TouTable(
        source="粤发改价格〔2021〕331号 (Guangdong DRC, effective 2021-10-01): peak 10-12 and 14-19, "
        "valley 0-8, flat otherwise; peak:flat:valley = 1.7:1:0.38; critical peak = peak × 1.25 "
        "at 11-12 and 15-17 in July, August and September",
        default_period="flat",
        rules=[
            _rule("valley", "00:00", "08:00"),
            _rule("peak", "10:00", "12:00"),
            _rule("peak", "14:00", "19:00"),
            _rule("critical", "11:00", "12:00", [7, 8, 9]),
            _rule("critical", "15:00", "17:00", [7, 8, 9]),
        ],
        ratios={"flat": 1.0, "peak": 1.7, "valley": 0.38, "critical": 1.7 * 1.25},
    ),
    "zhejiang_2024": TouTable(
        source="浙发改价格〔2024〕21号 (Zhejiang DRC): spring/autumn (Feb-Jun, Sep-Nov) peak 8-11 and "
        "13-17, flat 17-24, valley 0-8 and 11-13; summer/winter (Jan, Jul, Aug, Dec) critical 9-11 "
        "and 15-17, peak 8-9 and 17-23, flat 13-15 and 23-24, valley 0-8 and 11-13; deep valley "
        "10-14 on the Spring Festival, Labour Day and National Day holidays. The text fixes no price "
        "ratios: give every period's price in `prices`.",
        default_period="flat",
        rules=[
            _rule("valley", "00:00", "08:00"),
            _rule("valley", "11:00", "13:00"),
            _rule("peak", "08:00", "11:00", SPRING_AUTUMN_ZJ),
            _rule("peak", "13:00", "17:00", SPRING_AUTUMN_ZJ),
            _rule("peak", "08:00", "09:00", SUMMER_WINTER_ZJ),
            _rule("peak", "17:00", "23:00", SUMMER_WINTER_ZJ),
            _rule("critical", "09:00", "11:00", SUMMER_WINTER_ZJ),
            _rule("critical", "15:00", "17:00", SUMMER_WINTER_ZJ),
            _rule("deep_valley", "10:00", "14:00", days="holidays"),
        ],
    ),
    "jiangsu_2025": TouTable(
        source="苏发改价格发〔2025〕426号 (Jiangsu DRC): summer/winter (Jun-Aug, Dec-Feb) peak 14-22, "
        "flat 6-11, 13-14 and 22-24, valley 0-6 and 11-13; spring/autumn peak 15-22, valley 2-6 and "
        "10-14, flat otherwise. Peak = purchase price +80 % for two-part tariffs (+70 % single-part "
        "≥ 100 kVA, +60 % below: override `prices.peak`), valley −65 %.",
        default_period="flat",
        rules=[
            _rule("valley", "00:00", "06:00", SUMMER_WINTER_JS),
            _rule("valley", "11:00", "13:00", SUMMER_WINTER_JS),
            _rule("peak", "14:00", "22:00", SUMMER_WINTER_JS),
            _rule("valley", "02:00", "06:00", SPRING_AUTUMN_JS),
            _rule("valley", "10:00", "14:00", SPRING_AUTUMN_JS),
            _rule("peak", "15:00", "22:00", SPRING_AUTUMN_JS),
        ],
        ratios={"flat": 1.0, "peak": 1.8, "valley": 0.35},
    ),
    "sce_tou_ev_4_2019": TouTable(
        source="SCE TOU-EV-4 as bundled in acnportal 0.3.3 (sce_tou_ev_4_march_2019, effective "
        "2019-03-01), USD/kWh: summer June-September, winter October-May; weekdays 08-12 mid-peak, "
        "12-18 on-peak, 18-23 mid-peak; weekends and 23-08 off-peak; demand charge 15.51 USD/kW·month "
        "(configure it under grid.demand_charge)",
        default_period="winter_off_peak",
        rules=[
            _rule("winter_mid_peak", "08:00", "12:00", [1, 2, 3, 4, 5, 10, 11, 12], "weekdays"),
            _rule("winter_on_peak", "12:00", "18:00", [1, 2, 3, 4, 5, 10, 11, 12], "weekdays"),
            _rule("winter_mid_peak", "18:00", "23:00", [1, 2, 3, 4, 5, 10, 11, 12], "weekdays"),
            _rule("summer_off_peak", "00:00", "24:00", [6, 7, 8, 9]),
            _rule("summer_mid_peak", "08:00", "12:00", [6, 7, 8, 9], "weekdays"),
            _rule("summer_on_peak", "12:00", "18:00", [6, 7, 8, 9], "weekdays"),
            _rule("summer_mid_peak", "18:00", "23:00", [6, 7, 8, 9], "weekdays"),
        ],
        prices={
            "summer_on_peak": 0.26668, "summer_mid_peak": 0.0925, "summer_off_peak": 0.05623,
            "winter_on_peak": 0.0869, "winter_mid_peak": 0.07492, "winter_off_peak": 0.06087,
        },
    ),
}


class TableError(ValueError):
    """A bad ``tou_table`` tariff: ``field`` is the path below the tariff, ``value`` the bad value."""

    def __init__(self, field: tuple[str, ...], value: object, message: str) -> None:
        self.field = field
        self.value = value
        super().__init__(message)


def expand_table(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A ``tou_table`` tariff (as read from TOML) as the equivalent ``tou`` tariff; problems raise
    TableError naming ``where`` and the field."""
    known = {"kind", "table", "flat_price_per_kwh", "prices", "holidays"}
    extra = sorted(set(data) - known)
    if extra:
        raise TableError((extra[0],), data[extra[0]],
                         f"{where}.{extra[0]}: unknown field for kind 'tou_table' (allowed: {sorted(known)})")
    name = data.get("table")
    if name not in TABLES:
        known_tables = ", ".join(sorted(TABLES))
        raise TableError(("table",), name, f"{where}.table: unknown table {name!r}; known: {known_tables}")
    table = TABLES[name]
    flat = data.get("flat_price_per_kwh")
    given = dict(data.get("prices") or {})
    periods = {table.default_period} | {r["period"] for r in table.rules}
    prices: dict[str, float] = {}
    for period in sorted(periods):
        if period in given:
            prices[period] = given[period]
        elif period in table.prices:
            prices[period] = table.prices[period]
        elif period in table.ratios:
            if not isinstance(flat, int | float) or isinstance(flat, bool):
                raise TableError(
                    ("flat_price_per_kwh",), flat,
                    f"{where}.flat_price_per_kwh: a number is needed for the {period} ratio, got {flat!r}",
                )
            prices[period] = round(table.ratios[period] * float(flat), 6)
        else:
            raise TableError(
                ("prices", period), None,
                f"{where}.prices.{period}: table {name} fixes no price or ratio for {period}; give its price",
            )
    unknown = sorted(set(given) - periods)
    if unknown:
        raise TableError(("prices", unknown[0]), given[unknown[0]],
                         f"{where}.prices.{unknown[0]}: table {name} has no period {unknown[0]!r}")
    return {
        "kind": "tou",
        "default_period": table.default_period,
        "prices": prices,
        "rules": table.rules,
        "holidays": list(data.get("holidays") or table.holidays),
        "source": table.source,
    }
