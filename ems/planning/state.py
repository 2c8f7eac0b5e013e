"""State carried between plans: what the site is now, and what it has done this billing period."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SiteState:
    """Measured or simulated state at a planning instant.

    battery_soc_kwh: per battery; tank_kg: per tank; electrolyser_on and
    electrolyser_steps_in_state: per electrolyser (steps of the planning grid);
    ev_delivered_kwh: energy already delivered per session id; billing_period: "YYYY-MM"
    (local) of `peak_import_kw`, the highest step-average import in that period so far.
    """

    battery_soc_kwh: dict[str, float] = field(default_factory=dict)
    tank_kg: dict[str, float] = field(default_factory=dict)
    electrolyser_on: dict[str, bool] = field(default_factory=dict)
    electrolyser_steps_in_state: dict[str, int] = field(default_factory=dict)
    ev_delivered_kwh: dict[str, float] = field(default_factory=dict)
    billing_period: str = ""
    peak_import_kw: float = 0.0
    demand_peaks_kw: dict[int, float] = field(default_factory=dict)
    """Demand charge k >= 1 (index in ``grid.demand_charges``) -> the highest import counted by
    it this billing period (kW); the first charge's is ``peak_import_kw``."""

    def demand_peak_kw(self, k: int) -> float:
        """Demand charge k's peak so far this billing period (kW)."""
        return self.peak_import_kw if k == 0 else self.demand_peaks_kw.get(k, 0.0)

    def note_demand(self, k: int, import_kw: float) -> None:
        """Raise demand charge k's peak so far to `import_kw` if higher."""
        if k == 0:
            self.peak_import_kw = max(self.peak_import_kw, import_kw)
        else:
            self.demand_peaks_kw[k] = max(self.demand_peaks_kw.get(k, 0.0), import_kw)
