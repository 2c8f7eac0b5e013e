"""OpenEI Utility Rate Database (URDB, API v7) rates as ``tou`` tariffs and demand charges.

A site writes ``[grid.tariff] kind = "urdb", file = "rates/x.json"`` (path relative to the
config file; optional ``tier``, 1-based, default 1). The file is an API response
(``{"items": [rate, ...]}``, the first item is used) or a bare rate object.

Read: ``energyratestructure`` (periods × tiers of {rate, adj, max, unit, sell}) with
``energyweekdayschedule`` / ``energyweekendschedule`` (12 months × 24 local hours of period
indices, 0-based); ``demandratestructure`` with ``demandweekdayschedule`` /
``demandweekendschedule`` (time-of-use demand); ``flatdemandstructure`` with
``flatdemandmonths`` (12 period indices); ``fixedchargefirstmeter`` / ``fixedchargeunits``;
``name``, ``utility``, ``startdate`` (unix seconds), ``label``, ``uri``.

Price per kWh = rate + adj of the chosen tier (tier limits are not modelled: the tier is a
choice). Demand charges: one per TOU demand period and one per flat-demand period with a
non-zero rate, money per kW of the month's maximum import in its hours / months. Fixed
charges do not change any decision; they are only named in the tariff's ``source``. Not read:
``sell`` (net-metering sell rates), tier limits, ``dgrules``, ratchets, holidays (URDB has no
holiday calendar: holidays get the weekday or weekend schedule of their day).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KNOWN_FIELDS = {"kind", "file", "tier"}
ENERGY_UNITS = {"kwh"}
DEMAND_UNITS = {"kw"}


class UrdbError(ValueError):
    """A bad ``urdb`` tariff. ``field`` is the path below the tariff (inside the rate file it
    starts with "file"), ``value`` the bad value; the message reads "<where>.<field>: why"."""

    def __init__(self, field: tuple[str | int, ...], value: object, message: str) -> None:
        self.field = field
        self.value = value
        self.reason = message.split(": ", 1)[1] if ": " in message else message
        """The message without its leading "<where>.<field>: "."""
        super().__init__(message)


def _path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def read_rate(path: Path, file: str | None = None) -> dict[str, Any]:
    """The rate object of a URDB file: ``items[0]`` of an API response, or a bare rate.
    ``file`` is the path as configured (reported as the bad value)."""
    shown = file if file is not None else str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UrdbError(("file",), shown, f"file: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UrdbError(("file",), shown, f"file: {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "items" in data:
        items = data["items"]
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            raise UrdbError(("file", "items"), items,
                            f"file: {path}: items must be a non-empty list of rates")
        data = items[0]
    if not isinstance(data, dict):
        raise UrdbError(("file",), shown, f"file: {path}: expected a URDB rate object")
    return data


class _Reader:
    """Checks one rate's fields, raising UrdbError with the JSON path and the value."""

    def __init__(self, rate: dict[str, Any], where: str, path: Path) -> None:
        self.rate, self.where, self.path = rate, where, path

    def fail(self, parts: tuple[str | int, ...], value: object, why: str) -> UrdbError:
        return UrdbError(("file", *parts), value,
                         f"{self.where}.file.{_path(parts)}: in {self.path}: {why} (got {value!r})")

    def structure(self, key: str, unit_key: str | None, units: set[str],
                  tier: int) -> list[tuple[float, int]]:
        """Per period: (rate + adj of the chosen tier, number of tiers)."""
        periods = self.rate.get(key)
        if not isinstance(periods, list) or not periods:
            raise self.fail((key,), periods, "must be a non-empty list of periods (each a list of tiers)")
        common = self.rate.get(unit_key) if unit_key else None
        if common is not None and str(common).lower() not in units:
            raise self.fail((unit_key or key,), common, f"unit not supported (only {sorted(units)})")
        out = []
        for k, tiers in enumerate(periods):
            if not isinstance(tiers, list) or not tiers:
                raise self.fail((key, k), tiers, "must be a non-empty list of tiers")
            if len(tiers) > 1 and tier > len(tiers):
                raise UrdbError(("tier",), tier, f"{self.where}.tier: {key}[{k}] in {self.path} has only "
                                f"{len(tiers)} tiers")
            i = min(tier, len(tiers)) - 1
            t = tiers[i]
            if not isinstance(t, dict):
                raise self.fail((key, k, i), t, "a tier must be an object {rate, adj, max, unit}")
            unit = t.get("unit")
            if unit is not None and str(unit).lower() not in units:
                raise self.fail((key, k, i, "unit"), unit, f"unit not supported (only {sorted(units)})")
            price = 0.0
            for name in ("rate", "adj"):
                v = t.get(name, 0.0)
                if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
                    raise self.fail((key, k, i, name), v, "must be a number")
                price += float(v)
            out.append((price, len(tiers)))
        return out

    def schedule(self, key: str, n_periods: int, periods_from: str) -> list[list[int]]:
        """A 12 × 24 matrix of period indices (months × local hours)."""
        m = self.rate.get(key)
        if not isinstance(m, list) or len(m) != 12:
            shape = f"{len(m)} rows" if isinstance(m, list) else type(m).__name__
            raise self.fail((key,), shape, "must be a 12 × 24 matrix (12 months of 24 hours)")
        for i, row in enumerate(m):
            if not isinstance(row, list) or len(row) != 24:
                shape = f"{len(row)} values" if isinstance(row, list) else row
                raise self.fail((key, i), shape, "each month must have 24 hourly period indices")
            for h, v in enumerate(row):
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n_periods:
                    raise self.fail((key, i, h), v, f"period index out of range ({periods_from} has "
                                    f"{n_periods} periods, 0..{n_periods - 1})")
        return [list(row) for row in m]


def _hhmm(hour: int) -> str:
    return f"{hour:02d}:00"


def _runs(row: list[int]) -> list[tuple[int, int, int]]:
    """(value, first hour, end hour) for each run of equal values in a 24-hour row."""
    out: list[tuple[int, int, int]] = []
    start = 0
    for h in range(1, 25):
        if h == 24 or row[h] != row[start]:
            out.append((row[start], start, h))
            start = h
    return out


def _day_rows(weekday: list[list[int]], weekend: list[list[int]], m: int) -> list[tuple[str, list[int]]]:
    """Month m's rows by the config's day kinds: one "all" row when weekdays and weekends agree."""
    if weekday[m] == weekend[m]:
        return [("all", weekday[m])]
    return [("weekdays", weekday[m]), ("weekends", weekend[m])]


def _month_groups(weekday: list[list[int]], weekend: list[list[int]]) -> list[tuple[list[int], int]]:
    """Months (1-12) grouped by identical (weekday, weekend) rows, with a representative index."""
    groups: dict[tuple[tuple[int, ...], tuple[int, ...]], list[int]] = {}
    for m in range(12):
        groups.setdefault((tuple(weekday[m]), tuple(weekend[m])), []).append(m + 1)
    return [(months, months[0] - 1) for months in groups.values()]


def schedule_rules(weekday: list[list[int]], weekend: list[list[int]], name: str,
                   skip: int | None) -> list[dict[str, Any]]:
    """TOU rules (as config dicts) for the 12 × 24 schedules; period k is called f"{name}{k}";
    runs of period `skip` are left out (it is the default period)."""
    rules: list[dict[str, Any]] = []
    for months, m in _month_groups(weekday, weekend):
        for days, row in _day_rows(weekday, weekend, m):
            for period, start, end in _runs(row):
                if period != skip:
                    rules.append({"period": f"{name}{period}", "start": _hhmm(start), "end": _hhmm(end),
                                  "months": months, "days": days})
    return rules


def _windows(weekday: list[list[int]], weekend: list[list[int]], period: int) -> list[dict[str, Any]]:
    """Time windows (config dicts) where the schedules are at `period`."""
    out: list[dict[str, Any]] = []
    for months, m in _month_groups(weekday, weekend):
        for days, row in _day_rows(weekday, weekend, m):
            for p, start, end in _runs(row):
                if p == period:
                    out.append({"start": _hhmm(start), "end": _hhmm(end), "months": months, "days": days})
    return out


def expand_urdb(data: dict[str, Any], where: str, base_dir: Path | str | None
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A ``urdb`` tariff (as read from TOML) as (the equivalent ``tou`` tariff, the rate's
    demand charges as ``grid.demand_charges`` entries); problems raise UrdbError."""
    extra = sorted(set(data) - KNOWN_FIELDS)
    if extra:
        raise UrdbError((extra[0],), data[extra[0]],
                        f"{where}.{extra[0]}: unknown field for kind 'urdb' "
                        f"(allowed: {sorted(KNOWN_FIELDS)})")
    file = data.get("file")
    if not isinstance(file, str) or not file:
        raise UrdbError(("file",), file, f"{where}.file: the URDB rate file (JSON) is required")
    tier = data.get("tier", 1)
    if isinstance(tier, bool) or not isinstance(tier, int) or tier < 1:
        raise UrdbError(("tier",), tier, f"{where}.tier: must be a whole number >= 1 (1 = first tier)")
    path = Path(file)
    if not path.is_absolute():
        if base_dir is None:
            raise UrdbError(("file",), file, f"{where}.file: a relative path needs the config file's "
                            "directory (load the site with ems.config.load_site)")
        path = Path(base_dir) / path
    rate = read_rate(path, file)
    r = _Reader(rate, where, path)

    energy = r.structure("energyratestructure", None, ENERGY_UNITS, tier)
    wd = r.schedule("energyweekdayschedule", len(energy), "energyratestructure")
    we = r.schedule("energyweekendschedule", len(energy), "energyratestructure") \
        if "energyweekendschedule" in rate else wd
    hours = Counter(p for sched in (wd, we) for row in sched for p in row)
    default = hours.most_common(1)[0][0]
    prices = {f"period_{k}": round(price, 6) for k, (price, _) in enumerate(energy)}
    rules = schedule_rules(wd, we, "period_", default)

    charges: list[dict[str, Any]] = []
    notes: list[str] = []
    if "demandratestructure" in rate:
        demand = r.structure("demandratestructure", "demandrateunit", DEMAND_UNITS, tier)
        dwd = r.schedule("demandweekdayschedule", len(demand), "demandratestructure")
        dwe = r.schedule("demandweekendschedule", len(demand), "demandratestructure") \
            if "demandweekendschedule" in rate else dwd
        for k, (price, _) in enumerate(demand):
            windows = _windows(dwd, dwe, k)
            if price > 0 and windows:
                charges.append({"price_per_kw": round(price, 6), "windows": windows,
                                "name": f"tou_demand_period_{k}"})
    if "flatdemandstructure" in rate:
        flat = r.structure("flatdemandstructure", "flatdemandunit", DEMAND_UNITS, tier)
        months = rate.get("flatdemandmonths", [0] * 12)
        if not isinstance(months, list) or len(months) != 12:
            raise r.fail(("flatdemandmonths",), months,
                         "must list 12 flat-demand period indices (one per month)")
        for i, k in enumerate(months):
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(flat):
                raise r.fail(("flatdemandmonths", i), k, "period index out of range (flatdemandstructure "
                             f"has {len(flat)} periods, 0..{len(flat) - 1})")
        for k, (price, _) in enumerate(flat):
            in_months = [i + 1 for i, p in enumerate(months) if p == k]
            if price > 0 and in_months:
                charges.append({"price_per_kw": round(price, 6), "name": f"flat_demand_period_{k}",
                                **({"months": in_months} if len(in_months) < 12 else {})})

    tiered = max(n for _, n in energy)
    if tiered > 1:
        notes.append(f"energy price = rate + adj of tier {tier} (periods have up to {tiered} tiers; tier "
                     "limits are not modelled)")
    else:
        notes.append("energy price = rate + adj")
    fixed = rate.get("fixedchargefirstmeter")
    if isinstance(fixed, int | float) and not isinstance(fixed, bool) and fixed:
        notes.append(f"fixed charge {fixed:g} {rate.get('fixedchargeunits', '$/month')} (not in the plan)")
    start = rate.get("startdate")
    effective = (f", effective {datetime.fromtimestamp(start, tz=UTC).date().isoformat()}"
                 if isinstance(start, int | float) and not isinstance(start, bool) else "")
    label = rate.get("label")
    source = (f"OpenEI URDB{' ' + str(label) if label else ''}: {rate.get('utility', '?')}, "
              f"{rate.get('name', '?')}{effective} ({path.name}); " + "; ".join(notes))
    tariff = {"kind": "tou", "default_period": f"period_{default}", "prices": prices, "rules": rules,
              "source": source}
    return tariff, charges
