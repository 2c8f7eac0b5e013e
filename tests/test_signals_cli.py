"""`ems signals show`: the bundled Guangdong site's prices and carbon for one local day."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ems.cli.main import app

runner = CliRunner()


def test_signals_show_json_has_one_record_per_step_with_utc_and_local_times() -> None:
    result = runner.invoke(app, ["signals", "show", "guangdong_factory", "--from", "2025-07-14", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert len(records) == 96  # one local day of 15-min steps
    eleven = records[44]
    assert eleven["timestamp_local"] == "2025-07-14T11:00:00+08:00"
    assert eleven["timestamp_utc"] == "2025-07-14T03:00:00+00:00"
    # July 11:00-12:00 is the Guangdong critical peak: 0.70 × 1.7 × 1.25.
    assert eleven["tou_period"] == "critical" and eleven["import_price_per_kwh"] == 1.4875
    assert records[0]["tou_period"] == "valley" and records[0]["import_price_per_kwh"] == 0.266
    assert all(r["carbon_average_g_per_kwh"] > 0 for r in records)


def test_signals_show_table_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "signals.png"
    days = ["--from", "2025-07-14", "--to", "2025-07-15"]
    result = runner.invoke(app, ["signals", "show", "guangdong_factory", *days, "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "2025-07-15 23:45 +0800" in result.stdout and "critical" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_signals_show_outside_the_data_is_one_line_and_exit_2() -> None:
    result = runner.invoke(app, ["signals", "show", "guangdong_factory", "--from", "2030-01-01"])
    assert result.exit_code == 2
    assert "needs data until 2030-01-02 00:00" in result.output and "Traceback" not in result.output
    days = ["--from", "2025-07-14", "--to", "2025-07-13"]
    bad = runner.invoke(app, ["signals", "show", "guangdong_factory", *days])
    assert bad.exit_code == 2 and "--to 2025-07-13 is before --from 2025-07-14" in bad.output
