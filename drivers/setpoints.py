"""The setpoint vocabulary shared by the controller and the plant: one requested value per asset.

Units kW. ``battery_net_kw`` > 0 is discharging, < 0 charging; ``ev_kw`` is charging power
(< 0 only on a V2G charger); ``electrolyser_kw`` is stack power, 0 = standby (the unit then draws
its standby power); ``pv_limit_kw`` None = no curtailment.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Setpoints:
    """Requests for one step, by asset name."""

    battery_net_kw: dict[str, float] = field(default_factory=dict)
    ev_kw: dict[str, float] = field(default_factory=dict)
    electrolyser_kw: dict[str, float] = field(default_factory=dict)
    pv_limit_kw: dict[str, float | None] = field(default_factory=dict)
