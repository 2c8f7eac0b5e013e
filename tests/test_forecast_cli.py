"""`ems forecast accuracy` and `ems whatif --forecast model` through the command line."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner, Result

from ems.cli.main import app
from ems.config import LoadedSite
from ems.whatif.simulate import WhatIfOptions, simulate

runner = CliRunner()


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def test_forecast_accuracy_table_and_json() -> None:
    res = run("forecast", "accuracy", "guangdong_factory", "--month", "2025-06")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "30 daily forecasts at local midnight, 24 h ahead" in out
    assert "pv:roof_pv_kw MAE" in out and "load:factory_kw bias" in out
    assert "forecast - actual" in out and "EV sessions per day" in out

    res = run("forecast", "accuracy", "caltech_campus", "--month", "2019-10", "--horizon", "48", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["site"] == "caltech_campus" and doc["horizon_hours"] == 48
    assert doc["error_sign"].startswith("forecast - actual")
    cols = {s["column"]: s for s in doc["series"]}
    assert set(cols) == {"pv:carport_pv_kw", "load:campus_building_kw"}
    for s in cols.values():
        assert len(s["per_hour"]) == 48
        assert math.isfinite(s["total"]["mae"]) and s["skill_vs_baseline"] is not None
    assert doc["ev"]["days"] == 31


def test_forecast_accuracy_bad_months_exit_2() -> None:
    res = run("forecast", "accuracy", "guangdong_factory", "--month", "2025-13")
    assert res.exit_code == 2
    assert "--month 2025-13" in res.stderr and "YYYY-MM" in res.stderr
    res = run("forecast", "accuracy", "guangdong_factory", "--month", "2025-01")
    assert res.exit_code == 2 and "days of data before it" in res.stderr
    res = run("forecast", "accuracy", "guangdong_factory", "--month", "2026-02")
    assert res.exit_code == 2 and "after the data" in res.stderr


def test_forecast_show_next_to_measured() -> None:
    res = run("forecast", "show", "guangdong_factory", "--at", "2025-06-09T00:00", "--hours", "24", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["origin_utc"] == "2025-06-08T16:00:00+00:00"  # local midnight in Asia/Shanghai
    assert len(doc["hourly"]) == 24
    first = doc["hourly"][0]
    assert first["hour_local"].startswith("2025-06-09T00:00")
    assert first["forecast:pv:roof_pv_kw"] == 0 and first["measured:pv:roof_pv_kw"] == 0  # midnight
    assert all(h["forecast:load:factory_kw"] > 0 for h in doc["hourly"])
    # Monday: the six vans are expected back at 18:30 local, 45 kWh each
    assert [(s["arrival_utc"], s["energy_kwh"]) for s in doc["ev_sessions"]] == \
        [("2025-06-09T10:30:00+00:00", 45.0)] * 6
    res = run("forecast", "show", "guangdong_factory", "--at", "2025-01-01T00:00")
    assert res.exit_code == 2 and "no data before it" in res.stderr


def whatif_json(*extra: str, out: Path | None = None) -> dict:  # type: ignore[type-arg]
    args = ["whatif", "guangdong_factory", "--start", "2025-03-10", "--days", "2", "--strategy",
            "optimised", "--json", *extra]
    if out is not None:
        args += ["--out", str(out)]
    res = run(*args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["runs"]["optimised"]  # type: ignore[no-any-return]


def test_whatif_model_forecast_differs_from_perfect_and_keeps_limits(
        tmp_path: Path, guangdong: LoadedSite) -> None:
    perfect = whatif_json("--forecast", "perfect")
    model = whatif_json("--forecast", "model", out=tmp_path)
    assert perfect["kpis"]["total_cost"] != model["kpis"]["total_cost"]
    assert model["kpis"]["import_limit_exceeded_steps"] == 0
    cfg = guangdong.config
    steps = pd.read_csv(tmp_path / "optimised.csv")
    assert len(steps) == 2 * 96
    tol = 1e-6
    assert (steps["import_kw"] <= steps["import_limit_kw"] + tol).all()
    assert (steps["export_kw"] <= cfg.grid.export_limit_kw + tol).all()
    assert (steps["import_kw"] >= -tol).all() and (steps["export_kw"] >= -tol).all()
    for b in cfg.battery:
        soc = steps[f"{b.name}.soc_kwh"]
        assert (soc >= b.soc_min_fraction * b.capacity_kwh - tol).all()
        assert (soc <= b.soc_max_fraction * b.capacity_kwh + tol).all()
        net = steps[f"{b.name}.net_kw"]
        assert (net <= b.max_discharge_kw + tol).all() and (net >= -b.max_charge_kw - tol).all()
    for t in cfg.hydrogen_tank:
        level = steps[f"{t.name}.level_kg"]
        assert (level >= -tol).all() and (level <= t.capacity_kg + tol).all()
    assert (steps["ev_kw"] <= sum(c.max_power_kw for c in cfg.ev_charger) + tol).all()
    assert (steps["electrolyser_kw"] <= sum(e.rated_kw for e in cfg.electrolyser) + tol).all()
    # the EV fleet is regular: the forecast sessions let every van charge
    assert model["kpis"]["ev_shortfall_kwh"] < 1e-6


def test_whatif_model_default_start_and_too_early_start() -> None:
    res = run("whatif", "guangdong_factory", "--days", "1", "--strategy", "optimised",
              "--forecast", "model", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["start"] == "2025-01-29"  # 28 days of history first
    res = run("whatif", "guangdong_factory", "--start", "2025-01-03", "--days", "1", "--forecast", "model")
    assert res.exit_code == 2
    assert "earliest --start is 2025-01-08" in res.stderr


def test_whatif_model_forecast_in_parallel_workers(guangdong: LoadedSite) -> None:
    opts = WhatIfOptions(start=date(2025, 3, 10), days=3, forecast="model", workers=2, warmup_days=1)
    result = simulate(guangdong, opts)
    assert len(result.steps) == 3 * 96
    assert result.kpis["import_limit_exceeded_steps"] == 0
    assert result.solves >= 3 * 24
