"""The inputs row of the step holding an instant: prices, carbon, grid limits and demand-charge
windows in force now. From the current plan's inputs, else built for that step alone (tried once
per step: no file reads on every dispatch cycle)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ems.config.loader import LoadedSite
from ems.control.controller import Slot
from ems.inputs.site_inputs import SiteInputs, build_inputs, demand_window_column
from ems.planning.problem_builder import floor_to_step
from ems.planning.state import SiteState

log = logging.getLogger("ems.service")


class StepRows:
    def __init__(self, site: LoadedSite, plan_inputs: Callable[[], SiteInputs | None]) -> None:
        self.site = site
        self.cfg = site.config
        self.plan_inputs = plan_inputs
        self.step_minutes = self.cfg.planning.step_minutes
        self._own: SiteInputs | None = None
        self._failed: datetime | None = None

    def row(self, now: datetime) -> Any:
        """The row (a pandas Series) of the step holding ``now``; None when it cannot be built
        (e.g. a dynamic tariff not fetched yet)."""
        for inputs in (self.plan_inputs(), self._own):
            if inputs is not None:
                frame = inputs.frame
                k = frame.index.searchsorted(now, side="right") - 1
                if 0 <= k < len(frame) and now < frame.index[k] + timedelta(minutes=self.step_minutes):
                    return frame.iloc[k]
        slot = floor_to_step(now, self.step_minutes)
        if slot == self._failed:
            return None
        try:
            self._own = build_inputs(self.site, slot, slot + timedelta(minutes=self.step_minutes))
        except Exception as exc:  # the limits then come from the config; KPIs count energy only
            log.warning("no inputs for the step at %s: %s", slot.isoformat(), exc)
            self._own, self._failed = None, slot
            return None
        return self._own.frame.iloc[0]

    def demand_counted(self, row: Any) -> list[bool]:
        """Per demand charge, whether it counts the step of ``row`` (all, when unknown)."""
        return [bool(row[demand_window_column(k)]) if row is not None else True
                for k in range(len(self.cfg.grid.demand_charges))]

    def slot(self, now: datetime, state: SiteState) -> Slot:
        """The grid's terms now for the controller."""
        row = self.row(now)
        if row is not None:
            limits = float(row["import_limit_kw"]), float(row["export_limit_kw"])
        else:
            limits = self.cfg.grid.import_limit_kw, self.cfg.grid.export_limit_kw
        counted = self.demand_counted(row) if row is not None else [False] * len(self.cfg.grid.demand_charges)
        peaks = [state.demand_peak_kw(k) for k in range(len(counted))]
        return Slot(limits[0], limits[1], tuple(counted), tuple(peaks))
