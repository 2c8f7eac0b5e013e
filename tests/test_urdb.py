"""OpenEI URDB rates (recorded responses) as tou tariffs and demand charges, hour by hour.

Fixtures: ``urdb_sce_tou8_option_d.json`` is the API response shape ({"items": [rate]}) of SCE
TOU-8 Option D (URDB 674e0b87201c6bd096007a5a: 6 energy periods with adj, TOU demand and a flat
demand); ``urdb_pge_a10.json`` is a bare rate object, PG&E A-10 (URDB 6758b27bd731a5d4d806802e).
Variants (tiers, bad units, bad shapes) are derived from them in tmp_path.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ems.config import ConfigError, load_site
from ems.config.loader import SITE_DIR
from ems.config.models import GridConfig, TouTariff
from ems.inputs import build_inputs
from ems.inputs.site_inputs import demand_windows, tou_periods, tou_prices
from ems.planning.problem_builder import build_problem, initial_state, settings_from
from optimizer import solve

FIXTURES = Path(__file__).parent / "fixtures" / "signals"
SCE = "urdb_sce_tou8_option_d.json"
A10 = "urdb_pge_a10.json"
LA = "America/Los_Angeles"
CARBON = {"file": "x.csv", "column": "g", "kind": "average"}


def grid(tariff: dict[str, Any], base_dir: Path | None = FIXTURES, **extra: Any) -> GridConfig:
    data = {"import_limit_kw": 100.0, "export_limit_kw": 0.0, "tariff": tariff, "carbon": CARBON, **extra}
    return GridConfig.model_validate(data, context={"base_dir": base_dir})


def rate(name: str = SCE) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    out: dict[str, Any] = data["items"][0] if "items" in data else data
    return out


def write(tmp_path: Path, r: dict[str, Any], name: str = "rate.json") -> str:
    (tmp_path / name).write_text(json.dumps({"items": [r]}), encoding="utf-8")
    return name


def price_at(t: TouTariff, local: str) -> float:
    return float(tou_prices(t, pd.DatetimeIndex([pd.Timestamp(local, tz=LA)]))[0])


def test_sce_prices_at_hand_checked_hours() -> None:
    t = grid({"kind": "urdb", "file": SCE}).tariff
    assert isinstance(t, TouTariff)
    # Tuesday 15 July 2025 (summer weekday): 16-21 is period 5 (0.15072 + adj 0.00114), else period 3.
    assert price_at(t, "2025-07-15 17:00") == pytest.approx(0.15186)
    assert price_at(t, "2025-07-15 10:00") == pytest.approx(0.11343)
    assert price_at(t, "2025-07-15 21:00") == pytest.approx(0.11343)
    # Saturday 19 July: the weekend schedule puts 16-21 in period 4 (0.14085 + 0.00114).
    assert price_at(t, "2025-07-19 17:00") == pytest.approx(0.14199)
    # Wednesday 15 January (winter): 0-8 period 1, 8-16 period 0, 16-21 period 2.
    assert price_at(t, "2025-01-15 03:00") == pytest.approx(0.12331)
    assert price_at(t, "2025-01-15 10:00") == pytest.approx(0.08973)
    assert price_at(t, "2025-01-15 16:00") == pytest.approx(0.12428)
    assert price_at(t, "2025-01-18 16:00") == pytest.approx(0.12428)  # winter Saturday: same rows


def test_every_hour_of_a_year_matches_the_schedules() -> None:
    """An independent lookup: month row, local hour column, weekday or weekend matrix."""
    t = grid({"kind": "urdb", "file": SCE}).tariff
    assert isinstance(t, TouTariff)
    r = rate()
    prices = [tier[0]["rate"] + tier[0].get("adj", 0.0) for tier in r["energyratestructure"]]
    local = pd.date_range("2025-01-01", "2026-01-01", freq="1h", tz=LA, inclusive="left")
    expected = [prices[r["energyweekendschedule" if ts.dayofweek >= 5 else "energyweekdayschedule"]
                       [ts.month - 1][ts.hour]] for ts in local]
    np.testing.assert_allclose(tou_prices(t, local), expected, atol=1e-9)
    assert set(tou_periods(t, local)) == {f"period_{k}" for k in range(6)}


def test_demand_charges_from_tou_and_flat_structures() -> None:
    g = grid({"kind": "urdb", "file": SCE})
    charges = {dc.name: dc for dc in g.demand_charges}
    assert sorted(charges) == ["flat_demand_period_0", "tou_demand_period_1", "tou_demand_period_2"]
    assert charges["flat_demand_period_0"].price_per_kw == pytest.approx(25.36)
    assert charges["flat_demand_period_0"].windows == [] and charges["flat_demand_period_0"].months is None
    assert charges["tou_demand_period_1"].price_per_kw == pytest.approx(8.83)
    assert charges["tou_demand_period_2"].price_per_kw == pytest.approx(29.54)
    order = [dc.name for dc in g.demand_charges]
    stamps = ["2025-07-15 17:00", "2025-07-15 15:00", "2025-07-19 17:00", "2025-01-18 17:00",
              "2025-01-18 21:00"]
    masks = demand_windows(g.demand_charges, pd.DatetimeIndex([pd.Timestamp(s, tz=LA) for s in stamps]))
    col = {name: "demand_window" if k == 0 else f"demand_window:{k}" for k, name in enumerate(order)}
    # summer weekday 16-21 only (weekend rows are period 0 in summer)
    assert list(masks[col["tou_demand_period_2"]]) == [True, False, False, False, False]
    # winter, every day 16-21
    assert list(masks[col["tou_demand_period_1"]]) == [False, False, False, True, False]
    assert list(masks[col["flat_demand_period_0"]]) == [True] * 5


def test_source_names_rate_effective_date_tier_and_fixed_charge() -> None:
    t = grid({"kind": "urdb", "file": SCE}).tariff
    assert isinstance(t, TouTariff) and t.source is not None
    assert "674e0b87201c6bd096007a5a" in t.source and "Southern California Edison Co" in t.source
    assert "effective 2024-10-01" in t.source  # startdate 1727762400 = 2024-10-01T06:00Z
    assert "fixed charge 447.44 $/month" in t.source
    assert "tier" not in t.source  # one tier everywhere: no tier was chosen


def test_bare_rate_object_and_flat_demand_only() -> None:
    g = grid({"kind": "urdb", "file": A10})
    t = g.tariff
    assert isinstance(t, TouTariff)
    # July weekday 13:00 = period 4 (0.29771); 9:00 = period 3; July Saturday 13:00 = period 2.
    assert price_at(t, "2025-07-15 13:00") == pytest.approx(0.29771)
    assert price_at(t, "2025-07-15 09:00") == pytest.approx(0.29771)
    assert price_at(t, "2025-07-19 13:00") == pytest.approx(0.27092)
    assert price_at(t, "2025-01-15 13:00") == pytest.approx(0.24724)
    assert price_at(t, "2025-01-15 22:00") == pytest.approx(0.24653)
    assert [(dc.name, dc.price_per_kw) for dc in g.demand_charges] == [("flat_demand_period_0", 24.38)]
    assert t.source is not None and "fixed charge 11.5107 $/day" in t.source


def tiered(tmp_path: Path) -> str:
    r = rate()
    r["energyratestructure"][3] = [{"rate": 0.1, "max": 500, "unit": "kWh"},
                                   {"rate": 0.2, "adj": 0.01, "unit": "kWh"}]
    return write(tmp_path, r)


def test_tier_choice(tmp_path: Path) -> None:
    name = tiered(tmp_path)
    first = grid({"kind": "urdb", "file": name}, tmp_path).tariff
    second = grid({"kind": "urdb", "file": name, "tier": 2}, tmp_path).tariff
    assert isinstance(first, TouTariff) and isinstance(second, TouTariff)
    assert price_at(first, "2025-07-15 10:00") == pytest.approx(0.1)  # period 3, tier 1
    assert price_at(second, "2025-07-15 10:00") == pytest.approx(0.21)  # tier 2: rate + adj
    assert price_at(second, "2025-07-15 17:00") == pytest.approx(0.15186)  # single-tier period 5
    assert second.source is not None and "tier 2 (periods have up to 2 tiers" in second.source
    with pytest.raises(ValidationError, match=r"tariff\.tier = 3: energyratestructure\[3\] in .* has only 2"):
        grid({"kind": "urdb", "file": name, "tier": 3}, tmp_path)


def bad(tmp_path: Path, edit: Any) -> str:
    r = copy.deepcopy(rate())
    edit(r)
    return write(tmp_path, r)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["energyratestructure"][2][0].__setitem__("unit", "kWh daily"),
     r"tariff\.file\.energyratestructure\.2\.0\.unit = 'kWh daily': in .*rate\.json: unit not supported"),
    (lambda r: r.__setitem__("demandrateunit", "kVA"),
     r"tariff\.file\.demandrateunit = 'kVA': in .*unit not supported \(only \['kw'\]\)"),
    (lambda r: r["energyweekdayschedule"].pop(),
     r"tariff\.file\.energyweekdayschedule = '11 rows': .*must be a 12 × 24 matrix"),
    (lambda r: r["energyweekendschedule"][3].pop(),
     r"tariff\.file\.energyweekendschedule\.3 = '23 values': .*24 hourly period indices"),
    (lambda r: r["energyweekdayschedule"][6].__setitem__(14, 6),
     r"tariff\.file\.energyweekdayschedule\.6\.14 = 6: .*period index out of range \(energyratestructure "
     r"has 6 periods, 0\.\.5\)"),
    (lambda r: r["demandweekdayschedule"][0].__setitem__(17, 3),
     r"tariff\.file\.demandweekdayschedule\.0\.17 = 3: .*out of range"),
    (lambda r: r.__setitem__("flatdemandmonths", [0] * 11),
     r"tariff\.file\.flatdemandmonths = \[0, .*\]: .*12 flat-demand period indices"),
    (lambda r: r["energyratestructure"][0][0].__setitem__("rate", "0.1"),
     r"tariff\.file\.energyratestructure\.0\.0\.rate = '0\.1': .*must be a number"),
])
def test_bad_rate_files_name_the_field_and_value(tmp_path: Path, edit: Any, message: str) -> None:
    name = bad(tmp_path, edit)
    with pytest.raises(ValidationError, match=message):
        grid({"kind": "urdb", "file": name}, tmp_path)


def test_bad_config_fields(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"tariff\.file = 'nope\.json': .*cannot read"):
        grid({"kind": "urdb", "file": "nope.json"}, tmp_path)
    with pytest.raises(ValidationError, match=r"tariff\.tier = 0: must be a whole number >= 1"):
        grid({"kind": "urdb", "file": SCE, "tier": 0})
    with pytest.raises(ValidationError, match=r"tariff\.rate = 1: unknown field for kind 'urdb'"):
        grid({"kind": "urdb", "file": SCE, "rate": 1})
    with pytest.raises(ValidationError, match=r"tariff\.file = 'x\.json': a relative path needs"):
        grid({"kind": "urdb", "file": "x.json"}, None)
    (tmp_path / "empty.json").write_text('{"items": []}', encoding="utf-8")
    with pytest.raises(ValidationError, match=r"tariff\.file\.items = \[\]: .*non-empty list"):
        grid({"kind": "urdb", "file": "empty.json"}, tmp_path)


def test_configured_demand_charges_win_and_single_charge_is_normalised() -> None:
    g = grid({"kind": "urdb", "file": SCE}, demand_charge={"price_per_kw": 5.0})
    assert g.demand_charge is not None and [dc.price_per_kw for dc in g.demand_charges] == [5.0]
    g = grid({"kind": "urdb", "file": SCE}, demand_charges=[{"price_per_kw": 1.0}, {"price_per_kw": 2.0}])
    assert [dc.price_per_kw for dc in g.demand_charges] == [1.0, 2.0]
    with pytest.raises(ValidationError, match="give demand_charge or demand_charges, not both"):
        grid({"kind": "fixed", "price_per_kwh": 0.1}, demand_charge={"price_per_kw": 5.0},
             demand_charges=[{"price_per_kw": 1.0}])


def urdb_site(tmp_path: Path, rate_file: str) -> Path:
    """The bundled Caltech site with its tariff and demand charge replaced by a URDB rate file
    (rates/x.json next to the config); data paths made absolute."""
    text = (SITE_DIR / "caltech_campus.toml").read_text(encoding="utf-8")
    text = text.replace('"data/', f'"{SITE_DIR}/data/')
    text = re.sub(r"\[grid\.tariff\].*?(?=\n\[grid\.export_tariff\])",
                  '[grid.tariff]\nkind = "urdb"\nfile = "rates/x.json"\n', text, flags=re.S)
    text = re.sub(r"\[grid\.demand_charge\].*?(?=\n\[)", "", text, flags=re.S)
    (tmp_path / "rates").mkdir()
    (tmp_path / "rates" / "x.json").write_text((FIXTURES / rate_file).read_text(encoding="utf-8"),
                                               encoding="utf-8")
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_urdb_site_loads_and_plans(tmp_path: Path) -> None:
    site = load_site(str(urdb_site(tmp_path, SCE)))
    assert isinstance(site.config.grid.tariff, TouTariff)
    assert len(site.config.grid.demand_charges) == 3
    # Tuesday 16 July 2019, 14:00-18:00 local (UTC-7): the summer on-peak demand window opens at 16.
    start = datetime(2019, 7, 16, 21, 0, tzinfo=UTC)
    inputs = build_inputs(site, start, datetime(2019, 7, 17, 1, 0, tzinfo=UTC))
    assert inputs.frame["import_price_per_kwh"].iloc[0] == pytest.approx(0.11343)  # 14:00, period 3
    assert inputs.frame["import_price_per_kwh"].iloc[8] == pytest.approx(0.15186)  # 16:00, period 5
    problem = build_problem(site, inputs, start, initial_state(site.config), settings_from(site.config),
                            n_steps=16)
    charges = problem.connection.demand_charges
    assert [dc.price_per_kw for dc in charges] == pytest.approx([8.83, 29.54, 25.36])
    assert list(charges[1].window or []) == [False] * 8 + [True] * 8  # summer weekday 16-21
    assert not any(charges[0].window or [])  # the winter window is closed in July
    plan = solve(problem)
    imp = plan.series["grid.import_kw"]
    bill = 29.54 * max(imp[8:]) + 25.36 * max(imp)
    assert plan.costs["demand_charge"] == pytest.approx(bill, rel=1e-6)


def test_bad_unit_in_a_site_names_the_config_path(tmp_path: Path) -> None:
    path = urdb_site(tmp_path, SCE)
    r = rate()
    r["flatdemandunit"] = "hp"
    (tmp_path / "rates" / "x.json").write_text(json.dumps(r), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"grid\.tariff\.file\.flatdemandunit = 'hp': in .*x\.json"):
        load_site(str(path))


def test_each_charge_carries_its_own_peak_so_far(tmp_path: Path) -> None:
    site = load_site(str(urdb_site(tmp_path, SCE)))
    start = datetime(2019, 7, 16, 21, 0, tzinfo=UTC)
    inputs = build_inputs(site, start, datetime(2019, 7, 16, 23, 0, tzinfo=UTC))
    state = initial_state(site.config)
    state.billing_period, state.peak_import_kw, state.demand_peaks_kw = "2019-07", 50.0, {1: 70.0, 2: 90.0}
    settings = settings_from(site.config)
    charges = build_problem(site, inputs, start, state, settings, n_steps=8).connection.demand_charges
    assert [dc.peak_so_far_kw for dc in charges] == [50.0, 70.0, 90.0]
    state.billing_period = "2019-06"  # another month's peaks do not count
    charges = build_problem(site, inputs, start, state, settings, n_steps=8).connection.demand_charges
    assert [dc.peak_so_far_kw for dc in charges] == [0.0, 0.0, 0.0]
