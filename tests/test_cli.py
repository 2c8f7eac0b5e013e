"""The `ems` command line: config check/schema, what-if runs, single plans, their errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from ems.cli.main import app

SITES = Path(__file__).resolve().parents[1] / "site_configs"
runner = CliRunner()


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def site_copy(tmp_path: Path, name: str, edit: Callable[[str], str]) -> Path:
    """The bundled site's TOML, edited, with its data paths made absolute."""
    text = (SITES / f"{name}.toml").read_text(encoding="utf-8")
    text = text.replace('"data/', f'"{SITES}/data/')
    path = tmp_path / f"{name}_edited.toml"
    path.write_text(edit(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------- config


def test_config_check_bundled_site_prints_a_summary() -> None:
    res = run("config", "check", "guangdong_factory")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "battery bess: 2,000 kWh" in out
    assert "electrolyser pem: 250 kW" in out
    assert "Asia/Shanghai" in out and "CNY" in out
    assert "demand charge: 32 CNY/kW" in out
    assert "data: 2025-01-01 to 2025-12-31 read and checked: 35,040 steps" in out


BAD_CONFIGS = [
    # (edit of the TOML text, field named in the message, value named in the message)
    (lambda t: t.replace("capacity_kwh = 2000.0", "capacity_kwh = -5", 1),
     "battery[0].capacity_kwh", "-5"),
    (lambda t: t.replace('chemistry = "LFP"', 'chemistry = "LFP"\ncolour = "red"', 1),
     "battery[0].colour", "'red'"),
    (lambda t: t.replace('timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"', 1),
     "site.timezone", "'Mars/Olympus'"),
    (lambda t: t.replace('tank = "h2_tank"', 'tank = "no_such_tank"', 1),
     "electrolyser", "'no_such_tank'"),
]


@pytest.mark.parametrize(("edit", "field", "value"), BAD_CONFIGS,
                         ids=["negative-capacity", "unknown-field", "bad-timezone", "missing-tank"])
def test_config_check_reports_one_line_per_problem(tmp_path: Path, edit: Callable[[str], str],
                                                   field: str, value: str) -> None:
    path = site_copy(tmp_path, "guangdong_factory", edit)
    res = run("config", "check", str(path))
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert field in lines[0] and value in lines[0], lines[0]
    assert "Traceback" not in res.output


def test_config_check_in_a_real_process(tmp_path: Path) -> None:
    path = site_copy(tmp_path, "guangdong_factory",
                     lambda t: t.replace("max_charge_kw = 1000.0", "max_charge_kw = 0", 1))
    ems = Path(sys.executable).parent / "ems"  # the installed console script
    proc = subprocess.run([str(ems), "config", "check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: {path}: battery[0].max_charge_kw = 0: Input should be greater than 0"]


def test_config_check_data_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "load.csv"
    bad.write_text("timestamp_utc,load_kw\n2024-12-31T16:00:00Z,100\n2024-12-31T17:00:00Z,oops\n")
    path = site_copy(tmp_path, "guangdong_factory", lambda t: t.replace(
        f'"{SITES}/data/guangdong_factory/load_kw.csv"', f'"{bad}"'))
    res = run("config", "check", str(path))
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "load_kw" in lines[0] and "'oops'" in lines[0], res.stderr
    assert "Traceback" not in res.output


def test_config_schema_is_json_schema() -> None:
    res = run("config", "schema")
    assert res.exit_code == 0
    schema = json.loads(res.stdout)
    assert {"site", "grid", "battery", "electrolyser"} <= set(schema["properties"])


def test_unknown_set_key_is_named() -> None:
    res = run("config", "check", "guangdong_factory", "--set", "nosuch.field=1")
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "--set 'nosuch.field=1'" in res.stderr and "'nosuch'" in res.stderr
    res = run("config", "check", "guangdong_factory", "--no-data", "--set", "battery.colour=2")
    assert res.exit_code == 2 and "battery has no field 'colour'" in res.stderr
    # a battery addressed by name, a tariff price and a plain field are all accepted
    res = run("config", "check", "guangdong_factory", "--no-data",
              "--set", "battery.bess.capacity_kwh=4000", "--set", "grid.tariff.prices.valley=0.2")
    assert res.exit_code == 0, res.output
    assert "battery bess: 4,000 kWh" in res.stdout and "valley 0.2," in res.stdout


# ---------------------------------------------------------------- whatif


@pytest.fixture(scope="module")
def both_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("whatif")
    res = run("whatif", "guangdong_factory", "--start", "2025-07-14", "--days", "1",
              "--strategy", "both", "--json", "--out", str(out))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout), out


def test_whatif_both_strategies_json(both_day: tuple[dict[str, Any], Path]) -> None:
    doc, _ = both_day
    assert doc["site"] == "guangdong_factory" and doc["start"] == "2025-07-14" and doc["days"] == 1
    assert set(doc["runs"]) == {"baseline", "optimised"}
    base, opt = doc["runs"]["baseline"], doc["runs"]["optimised"]
    assert opt["kpis"]["total_cost"] <= base["kpis"]["total_cost"]
    assert base["kpis"]["ev_shortfall_kwh"] == 0 and opt["kpis"]["ev_shortfall_kwh"] == 0
    assert opt["solver"]["solves"] == 24 and base["solver"]["solves"] == 0


def test_whatif_out_writes_steps_and_summary(both_day: tuple[dict[str, Any], Path]) -> None:
    doc, out = both_day
    assert json.loads((out / "summary.json").read_text()) == doc
    for name in ("baseline", "optimised"):
        steps = pd.read_csv(out / f"{name}.csv")
        assert len(steps) == 96
        assert steps["local"].iloc[0] == "2025-07-14T00:00:00+08:00"
        assert steps["utc"].iloc[-1] == "2025-07-14T15:45:00+00:00"
    # the file agrees with the KPI: energy cost from the per-step record
    steps = pd.read_csv(out / "optimised.csv")
    cost = ((steps["import_kw"] * steps["import_price_per_kwh"]
             - steps["export_kw"] * steps["export_price_per_kwh"]) * 0.25).sum()
    assert cost == pytest.approx(doc["runs"]["optimised"]["kpis"]["energy_cost"], rel=1e-9)


def test_whatif_set_changes_the_result(both_day: tuple[dict[str, Any], Path]) -> None:
    doc, _ = both_day
    res = run("whatif", "guangdong_factory", "--start", "2025-07-14", "--days", "1",
              "--strategy", "optimised", "--json", "--set", "battery.capacity_kwh=4000")
    assert res.exit_code == 0, res.output
    big = json.loads(res.stdout)["runs"]["optimised"]
    assert big["overrides"] == ["battery.capacity_kwh=4000"]
    small = doc["runs"]["optimised"]["kpis"]
    assert big["kpis"]["total_cost"] != pytest.approx(small["total_cost"], rel=1e-6)
    assert big["end_state"]["battery_start_kwh"] == pytest.approx(2000.0)


def test_whatif_table_with_scenario_and_difference() -> None:
    res = run("whatif", "guangdong_factory", "--start", "2025-07-14", "--days", "1",
              "--strategy", "baseline", "--scenario", "big battery: battery.capacity_kwh=4000, "
              "battery.max_charge_kw=2000")
    assert res.exit_code == 0, res.output
    out = res.stdout
    header = next(line for line in out.splitlines() if "KPI" in line)
    assert "baseline" in header and "big battery" in header and "vs baseline" in header
    total = next(line for line in out.splitlines() if "Total cost (CNY)" in line)
    values = re.findall(r"-?[\d,]+(?:\.\d+)?", total)
    base, big, diff = (float(v.replace(",", "")) for v in values[:3])
    assert diff == pytest.approx(big - base, abs=1.0)
    assert re.search(r"\(-?\d+\.\d%\)", total)
    assert "Costs are in CNY" in out and "average grid carbon intensity" in out


def test_whatif_dst_day_has_100_steps(tmp_path: Path) -> None:
    res = run("whatif", "caltech_campus", "--start", "2019-11-03", "--days", "1",
              "--strategy", "baseline", "--out", str(tmp_path), "--format", "csv",
              "--workers", "2")
    assert res.exit_code == 0, res.output
    steps = pd.read_csv(tmp_path / "baseline.csv")
    assert len(steps) == 100
    assert steps["local"].iloc[0] == "2019-11-03T00:00:00-07:00"
    assert steps["local"].iloc[-1] == "2019-11-03T23:45:00-08:00"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["runs"]["baseline"]["kpis"]["total_cost"] > 0


@pytest.mark.parametrize(("args", "words"), [
    (["--start", "2024-12-01"], ["before the site's data", "2025-01-01 to 2025-12-31"]),
    (["--start", "2026-01-01"],
     ["2025-01-01 to 2025-12-31", "latest --start for 1 day(s) is 2025-12-31"]),
    (["--start", "2025-07-32"], ["--start '2025-07-32': not a date"]),
    (["--start", "2025-07-14", "--set", "nosuch.field=1"], ["nosuch"]),
    (["--start", "2025-07-14", "--replan-every", "20min"], ["multiple of the 15-minute step"]),
    (["--start", "2025-07-14", "--scenario", "no colon here"], ["NAME: key=value"]),
])
def test_whatif_bad_input_is_one_line(args: list[str], words: list[str]) -> None:
    res = run("whatif", "guangdong_factory", "--days", "1", *args)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for w in words:
        assert w in lines[0]
    assert "Traceback" not in res.output


# ---------------------------------------------------------------- plan


def test_plan_json_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "plan.png"
    res = run("plan", "guangdong_factory", "--at", "2025-07-15T00:00", "--json", "--plot", str(png))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    steps = doc["steps"]
    assert len(steps) == 192
    assert all(s["local"].endswith("+08:00") for s in steps)
    assert steps[0]["local"] == "2025-07-15T00:00:00+08:00"
    assert steps[0]["utc"] == "2025-07-14T16:00:00+00:00"
    utc = pd.DatetimeIndex([s["utc"] for s in steps])
    assert (np.diff(utc.to_numpy()) == np.timedelta64(15, "m")).all()
    assert steps[0]["import_price_per_kwh"] == pytest.approx(0.266)  # valley
    assert {"grid.import_kw", "bess.soc_kwh", "carbon_g_per_kwh", "why"} <= set(steps[0])
    assert doc["total_cost"] == pytest.approx(sum(doc["costs"].values()))
    assert doc["carbon_kind"] == "average" and doc["solver"]["status"] in ("optimal", "feasible",
                                                                         "relaxed")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_plan_table_in_local_hours() -> None:
    res = run("plan", "guangdong_factory", "--at", "2025-07-15T10:07", "--hours", "6")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "from 2025-07-15 10:00 Asia/Shanghai (UTC+08:00)" in out  # rounded down to the step
    assert "Cost (CNY): total" in out and "kgCO2 by average intensity" in out
    assert "Slacks: none" in out or "Slack:" in out
    rows = [line for line in out.splitlines() if re.match(r"│(Tue 15 )?\d\d:00 ", line)]
    assert [r[1:13].strip()[-5:] for r in rows] == ["10:00", "11:00", "12:00", "13:00", "14:00",
                                                   "15:00"]


def test_plan_bad_times() -> None:
    res = run("plan", "guangdong_factory", "--at", "2025-12-31T10:00")
    assert res.exit_code == 2 and "needs data until 2026-01-02 10:00" in res.stderr
    res = run("plan", "caltech_campus", "--at", "2019-11-03T01:30")
    assert res.exit_code == 2
    assert "2019-11-03T01:30:00-07:00 or 2019-11-03T01:30:00-08:00" in res.stderr
    res = run("plan", "guangdong_factory", "--at", "tomorrow")
    assert res.exit_code == 2 and "not an ISO time" in res.stderr
    assert "Traceback" not in res.output


# ---------------------------------------------------------------- pieces


def test_hourly_rows_follow_local_hours_across_dst() -> None:
    from ems.cli.explain import hourly

    idx = pd.date_range("2019-11-03T07:00Z", periods=100, freq="15min")  # 25 local hours
    steps = pd.DataFrame({"price": 1.0, "import_kw": np.arange(100.0), "soc_kwh": np.arange(100.0),
                          "tank_kg": 0.0, "hydrogen_kg": 0.5, "period": "x"}, index=idx)
    hours = hourly(steps, "America/Los_Angeles")
    assert len(hours) == 25 and (hours["steps"] == 4).all()
    assert hours["import_kw"].iloc[0] == pytest.approx(1.5)  # mean of 0..3
    assert hours["soc_kwh"].iloc[0] == 3.0  # end of the hour
    assert hours["hydrogen_kg"].iloc[0] == pytest.approx(2.0)  # summed
    local = pd.DatetimeIndex(hours.index).tz_convert("America/Los_Angeles")
    assert [t.hour for t in local[:3]] == [0, 1, 1]  # 01:00 twice


def test_why_rules() -> None:
    from ems.cli.explain import Context, explain

    rows = pd.DataFrame({
        "price": [0.266, 1.19, 0.7, 0.7], "export_price": [0.45] * 4, "carbon": [500.0] * 4,
        "import_limit": [2500.0] * 4, "export_limit": [0.0, 0.0, 100.0, 0.0],
        "pv_kw": [0.0, 0.0, 900.0, 0.0], "pv_curtailed_kw": [0.0, 0.0, 50.0, 0.0],
        "load_kw": [500.0, 500.0, 500.0, 500.0], "import_kw": [1000.0, 300.0, 0.0, 500.0],
        "export_kw": [0.0, 0.0, 100.0, 0.0], "charge_kw": [500.0, 0.0, 300.0, 0.0],
        "discharge_kw": [0.0, 200.0, 0.0, 0.0], "soc_kwh": [1000.0, 800.0, 1100.0, 200.0],
        "ev_kw": 0.0, "electrolyser_kw": 0.0, "hydrogen_kg": 0.0, "tank_kg": 0.0,
        "period": ["valley", "peak", "flat", "flat"],
    })
    ctx = Context(price_min=0.266, price_max=1.19, peak_import_kw=1000.0, demand_charge=False,
                  carbon_price=0.0, carbon_min=500.0, battery_thr_kw=10.0, capacity_kwh=2000.0,
                  soc_min_kwh=200.0, soc_max_kwh=1900.0)
    why = explain(rows, ctx, np.zeros(4, dtype=bool))
    assert why[0] == "charge: valley price 0.27"
    assert why[1] == "discharge: peak price 1.19"
    assert why[2] == "charge: PV surplus; curtail: export limit 100 kW"
    assert why[3] == "battery empty (SOC min)"


def test_scenario_parsing() -> None:
    from ems.cli.whatif_cmd import split_scenario

    assert split_scenario("big: battery.capacity_kwh=4000, grid.import_limit_kw = 3000") == (
        "big", ["battery.capacity_kwh=4000", "grid.import_limit_kw = 3000"])
    assert split_scenario("m: ev_sessions.schedule[0].chargers=['a', 'b'], x.y=1")[1] == [
        "ev_sessions.schedule[0].chargers=['a', 'b']", "x.y=1"]


def test_cli_import_is_light() -> None:
    code = ("import sys, ems.cli.main; "
            "print(sorted(m for m in ('pandas', 'optimizer', 'pyomo', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"
