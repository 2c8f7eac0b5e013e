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
SUMMER_WINTER_SH = [1, 7, 8, 9, 12]
OTHER_SH = [2, 3, 4, 5, 6, 10, 11]
DEEP_WEEKEND_SH = [2, 3, 4, 5, 6, 9, 10, 11]
WINTER_SD = [1, 2, 12]
SPRING_SD = [3, 4, 5]
SUMMER_SD = [7, 8]
AUTUMN_SD = [9, 10, 11]


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
    "shanghai_2022": TouTable(
        source="沪发改价管〔2022〕50号 (Shanghai DRC, two-part-tariff users), deep valley per "
        "沪发改价管〔2024〕28号, as quoted in State Grid Shanghai's agency-purchase price notice and "
        "in a second transcription citing fgw.sh.gov.cn/fgw_jggl/20221216/"
        "e2652e3ab7ee49438d6e82af8880b160.html: July-September peak 8-15 and 18-21, critical 12-14 "
        "in July and August; other months peak 8-11 and 18-21, critical 19-21 in January and "
        "December; valley 22-6 all year; flat otherwise. Summer/winter (Jan, Jul-Sep, Dec) peak "
        "+80 %, valley -60 %, critical = peak +25 %; other months peak +60 %, valley -50 %. Deep "
        "valley (flat -80 %, large-industry users only: otherwise set `prices.deep_valley` to the "
        "valley price) 0-6 and 22-24 on rest days (weekends) of Feb-Jun and Sep-Nov and on the "
        "public holidays listed in `holidays`; weekends worked by holiday swaps are not modelled.",
        default_period="flat",
        rules=[
            _rule("valley", "22:00", "06:00", OTHER_SH),
            _rule("summer_winter_valley", "22:00", "06:00", SUMMER_WINTER_SH),
            _rule("summer_winter_peak", "08:00", "15:00", [7, 8, 9]),
            _rule("summer_winter_peak", "18:00", "21:00", [7, 8, 9]),
            _rule("summer_winter_peak", "08:00", "11:00", [1, 12]),
            _rule("summer_winter_peak", "18:00", "21:00", [1, 12]),
            _rule("peak", "08:00", "11:00", OTHER_SH),
            _rule("peak", "18:00", "21:00", OTHER_SH),
            _rule("critical", "12:00", "14:00", [7, 8]),
            _rule("critical", "19:00", "21:00", [1, 12]),
            _rule("deep_valley", "22:00", "06:00", DEEP_WEEKEND_SH, "weekends"),
            _rule("deep_valley", "22:00", "06:00", days="holidays"),
        ],
        ratios={"flat": 1.0, "summer_winter_peak": 1.8, "summer_winter_valley": 0.4,
                "critical": 1.8 * 1.25, "peak": 1.6, "valley": 0.5, "deep_valley": 0.2},
    ),
    "shandong_2025": TouTable(
        source="鲁发改价格〔2023〕914号 (Shandong DRC) with its 2025 period division, as quoted in "
        "State Grid Shandong's agency-purchase price notice (the same hours are given for 2026 by "
        "Jinan DRC, jndpc.jinan.gov.cn art_2191_4789557): Jan, Feb, Dec valley 2-6 and 10-15 "
        "(deep valley 11-14), peak 7-9 and 16-21 (critical 16-19); Mar-May valley 10-15 (deep "
        "11-14), peak 17-22 (critical 17-20); June valley 7-12, peak 16-23 (critical 17-22); "
        "Jul-Aug valley 1-6, peak 16-23 (critical 17-22); Sep-Nov valley 10-15 (deep 11-14), peak "
        "16-21 (critical 17-19); flat otherwise. Peak +70 %, valley -70 %, critical +100 %, deep "
        "valley -90 % of flat.",
        default_period="flat",
        rules=[
            _rule("valley", "02:00", "06:00", WINTER_SD),
            _rule("valley", "10:00", "15:00", WINTER_SD),
            _rule("deep_valley", "11:00", "14:00", WINTER_SD),
            _rule("peak", "07:00", "09:00", WINTER_SD),
            _rule("peak", "16:00", "21:00", WINTER_SD),
            _rule("critical", "16:00", "19:00", WINTER_SD),
            _rule("valley", "10:00", "15:00", SPRING_SD),
            _rule("deep_valley", "11:00", "14:00", SPRING_SD),
            _rule("peak", "17:00", "22:00", SPRING_SD),
            _rule("critical", "17:00", "20:00", SPRING_SD),
            _rule("valley", "07:00", "12:00", [6]),
            _rule("peak", "16:00", "23:00", [6]),
            _rule("critical", "17:00", "22:00", [6]),
            _rule("valley", "01:00", "06:00", SUMMER_SD),
            _rule("peak", "16:00", "23:00", SUMMER_SD),
            _rule("critical", "17:00", "22:00", SUMMER_SD),
            _rule("valley", "10:00", "15:00", AUTUMN_SD),
            _rule("deep_valley", "11:00", "14:00", AUTUMN_SD),
            _rule("peak", "16:00", "21:00", AUTUMN_SD),
            _rule("critical", "17:00", "19:00", AUTUMN_SD),
        ],
        ratios={"flat": 1.0, "peak": 1.7, "valley": 0.3, "critical": 2.0, "deep_valley": 0.1},
    ),
    "sce_tou_ev_4_2019": TouTable(
        source="SCE TOU-EV-4 as bundled in acnportal 0.3.3 (sce_tou_ev_4_march_2019, effective "
        "2019-03-01), USD/kWh: summer June-September, winter October-May; weekdays 08-12 mid-peak, "
        "12-18 on-peak, 18-23 mid-peak; weekends and 23-08 off-peak; demand charge 15.51 USD/kW·month "
        "(configure it under grid.demand_charge or grid.demand_charges)",
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
