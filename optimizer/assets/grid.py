"""Grid connection: import/export with (time-varying) limits, prices, carbon and demand charge."""

from __future__ import annotations

from typing import Any

import pyomo.environ as pyo

from optimizer.assets.base import (
    ELECTRICITY,
    AssetBlock,
    AssetResult,
    Context,
    ObjectiveTerm,
    mutable,
    slack_use,
)
from optimizer.problem import Grid, Problem


class GridBlock(AssetBlock):
    """Import and export kW at the connection point.

    Soft limits: import/export above the (time-varying) limit is slack, penalised.
    Demand charges (one or several): each is rate x (its horizon peak - its peak already
    reached), its peak over its own windowed steps.
    The export price used in the model is capped at the import price of the step, because
    import and export in one metering step net out.
    """

    def __init__(self, name: str, n_charges: int = 1) -> None:
        super().__init__(name)
        self.n_charges = n_charges

    def _charge_names(self, c: int, base: str) -> str:
        """Component name of charge c's part: the first charge keeps the plain names."""
        return base if c == 0 else f"{base}_{c}"

    def build(self, b: Any, ctx: Context) -> None:
        self.ctx = ctx
        T = ctx.steps
        for name in ("import_limit", "export_limit", "import_price", "export_price", "intensity"):
            mutable(b, name, ctx)
        mutable(b, "penalty")
        b.imp = pyo.Var(T, within=pyo.NonNegativeReals)
        b.exp = pyo.Var(T, within=pyo.NonNegativeReals)
        b.imp_over = pyo.Var(T, within=pyo.NonNegativeReals)
        b.exp_over = pyo.Var(T, within=pyo.NonNegativeReals)
        b.imp_limit_con = pyo.Constraint(T, rule=lambda b, t: b.imp[t] <= b.import_limit[t] + b.imp_over[t])
        b.exp_limit_con = pyo.Constraint(T, rule=lambda b, t: b.exp[t] <= b.export_limit[t] + b.exp_over[t])
        # One peak per demand charge: peak_c >= its peak so far, and >= import in its window steps.
        self.windows: list[Any] = []
        self.rates: list[Any] = []
        self.peaks_so_far: list[Any] = []
        self.peaks: list[Any] = []
        for c in range(self.n_charges):
            window = mutable(b, self._charge_names(c, "window"), ctx)
            rate = mutable(b, self._charge_names(c, "demand_rate"))
            so_far = mutable(b, self._charge_names(c, "peak_so_far"))
            peak = pyo.Var(within=pyo.NonNegativeReals)
            b.add_component(self._charge_names(c, "peak"), peak)
            b.add_component(self._charge_names(c, "peak_floor"), pyo.Constraint(expr=peak >= so_far))
            b.add_component(self._charge_names(c, "peak_con"), pyo.Constraint(
                T, rule=lambda b, t, peak=peak, window=window: peak >= window[t] * b.imp[t]))
            self.windows.append(window)
            self.rates.append(rate)
            self.peaks_so_far.append(so_far)
            self.peaks.append(peak)
        self.block = b

    def injections(self) -> dict[str, list[Any]]:
        b = self.block
        return {ELECTRICITY: [b.imp[t] - b.exp[t] for t in range(self.ctx.n_steps)]}

    def objective_terms(self) -> list[ObjectiveTerm]:
        b, dt, n = self.block, self.ctx.step_hours, self.ctx.n_steps
        return [
            ObjectiveTerm("import", "money", sum(b.import_price[t] * dt * b.imp[t] for t in range(n))),
            ObjectiveTerm("export", "money", -sum(b.export_price[t] * dt * b.exp[t] for t in range(n))),
            ObjectiveTerm("demand_charge", "money", sum(
                rate * (peak - so_far) for rate, peak, so_far in zip(
                    self.rates, self.peaks, self.peaks_so_far, strict=True))),
            ObjectiveTerm("emissions", "carbon",
                          sum(b.intensity[t] * (dt / 1000.0) * b.imp[t] for t in range(n))),
            ObjectiveTerm("grid_limit", "penalty",
                          sum(b.penalty * dt * (b.imp_over[t] + b.exp_over[t]) for t in range(n))),
        ]

    def update(self, spec: Grid, problem: Problem) -> None:
        b = self.block
        self.set_series(b.import_limit, spec.import_limit_kw)
        self.set_series(b.export_limit, spec.export_limit_kw)
        self.set_series(b.import_price, spec.import_price_per_kwh)
        self.set_series(b.export_price, [min(e, i) for e, i in
                                    zip(spec.export_price_per_kwh, spec.import_price_per_kwh, strict=True)])
        self.set_series(b.intensity, spec.carbon_intensity_g_per_kwh)
        charges = spec.charges()
        if len(charges) != self.n_charges:
            raise ValueError(f"connection: {len(charges)} demand charges, the model was built for "
                             f"{self.n_charges}")
        for c, dc in enumerate(charges):
            window = dc.window if dc.window is not None else [True] * problem.grid.n_steps
            self.set_series(self.windows[c], [1.0 if w else 0.0 for w in window])
            self.set(self.rates[c], dc.price_per_kw)
            self.set(self.peaks_so_far[c], dc.peak_so_far_kw)
        self.set(b.penalty, problem.penalties.grid_limit_per_kwh)

    def extract(self, spec: Grid, problem: Problem) -> AssetResult:
        b, dt, n = self.block, self.ctx.step_hours, self.ctx.n_steps
        imp, exp = self.values(b.imp), self.values(b.exp)
        # One meter: import and export in the same step net out. The model only does both
        # where that costs nothing (a tie), so the netted flows are an equally good solution.
        imp, exp = ([max(0.0, i - e) for i, e in zip(imp, exp, strict=True)],
                    [max(0.0, e - i) for i, e in zip(imp, exp, strict=True)])
        imp_over, exp_over = self.values(b.imp_over), self.values(b.exp_over)
        windows, peaks = [], []
        for dc in spec.charges():
            window = dc.window if dc.window is not None else [True] * n
            windows.append(window)
            peaks.append(max([dc.peak_so_far_kw] + [imp[t] for t in range(n) if window[t]]))
        res = AssetResult()
        res.series = {f"{self.name}.import_kw": imp, f"{self.name}.export_kw": exp}
        res.costs = {
            "import": sum(p * dt * x for p, x in zip(spec.import_price_per_kwh, imp, strict=True)),
            "export": -sum(p * dt * x for p, x in zip(spec.export_price_per_kwh, exp, strict=True)),
            "demand_charge": sum(dc.price_per_kw * max(0.0, peak - dc.peak_so_far_kw)
                                 for dc, peak in zip(spec.charges(), peaks, strict=True)),
        }
        res.emissions_kg = sum(
            c * dt / 1000.0 * x for c, x in zip(spec.carbon_intensity_g_per_kwh, imp, strict=True)
        )
        pen = problem.penalties.grid_limit_per_kwh
        for limit, amounts in (("import_limit", imp_over), ("export_limit", exp_over)):
            use = slack_use(limit, self.name, [a * dt for a in amounts], "kWh", pen)
            if use is not None:
                res.slacks.append(use)
                res.costs[f"penalty_{limit}"] = use.penalty_cost
        res.binding = {
            "import_limit": sum(1 for t in range(n)
                                if imp[t] > 0 and imp[t] >= spec.import_limit_kw[t] - 1e-6),
            "export_limit": sum(1 for t in range(n)
                                if exp[t] > 0 and exp[t] >= spec.export_limit_kw[t] - 1e-6),
        }
        for c, (window, peak) in enumerate(zip(windows, peaks, strict=True)):
            key = "demand_peak" if c == 0 else f"demand_peak_{c}"
            res.binding[key] = sum(1 for t in range(n) if window[t] and imp[t] > 0 and imp[t] >= peak - 1e-6)
        return res
