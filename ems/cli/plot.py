"""A plan as a figure: stacked power flows, price and carbon, storage levels (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ems.cli.plan_cmd import Solved


def plot_plan(s: Solved, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from ems.cli.explain import site_frame

    cfg = s.site.config
    tz = cfg.site.timezone
    f = site_frame(cfg, s.window, s.plan)
    step = pd.Timedelta(minutes=s.plan.step_minutes)
    index = pd.DatetimeIndex(f.index).tz_convert(tz)
    x = [*index, index[-1] + step]

    def ext(values: np.ndarray) -> np.ndarray:
        return np.append(values, values[-1])

    ev = f["ev_kw"].to_numpy()
    sources = [
        ("PV", f["pv_kw"].to_numpy(), "#f2c14e"),
        ("grid import", f["import_kw"].to_numpy(), "#a8a8a8"),
        ("battery discharge", f["discharge_kw"].to_numpy(), "#3a86ff"),
        ("EV discharge (V2G)", np.clip(-ev, 0, None), "#8ecae6"),
    ]
    sinks = [
        ("load", f["load_kw"].to_numpy(), "#4a4e69"),
        ("battery charge", f["charge_kw"].to_numpy(), "#90b4ff"),
        ("EV charging", np.clip(ev, 0, None), "#2a9d8f"),
        ("electrolyser", f["electrolyser_kw"].to_numpy(), "#e76f51"),
        ("grid export", f["export_kw"].to_numpy(), "#b5b5b5"),
    ]
    sources = [t for t in sources if np.abs(t[1]).max() > 1e-6]
    sinks = [t for t in sinks if np.abs(t[1]).max() > 1e-6]

    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(12, 9), sharex=True,
                                        gridspec_kw={"height_ratios": [3, 1.3, 1.3]})
    if sources:
        ax1.stackplot(x, *[ext(v) for _, v, _ in sources], labels=[n for n, _, _ in sources],
                      colors=[c for _, _, c in sources], step="post", alpha=0.9)
    if sinks:
        ax1.stackplot(x, *[-ext(v) for _, v, _ in sinks], labels=[n for n, _, _ in sinks],
                      colors=[c for _, _, c in sinks], step="post", alpha=0.9)
    ax1.axhline(0, color="black", linewidth=0.6)
    ax1.set_ylabel("kW (supply + / use -)")
    low, high = ax1.get_ylim()
    ax1.set_ylim(low, high + 0.3 * (high - low))  # room for the legends
    ax1.legend(loc="upper left", fontsize=8, ncol=4)
    ax1.set_title(f"{cfg.site.name}: plan from {x[0]:%Y-%m-%d %H:%M} ({tz}), "
                  f"cost {s.plan.total_cost:,.0f} {cfg.site.currency}, "
                  f"{s.plan.emissions_kg:,.0f} kgCO2 ({s.inputs.carbon_kind})")
    twin = ax1.twinx()
    price = f["price"].to_numpy()
    twin.step(x, ext(price), where="post", color="crimson", linewidth=1.2,
              label=f"import price ({cfg.site.currency}/kWh)")
    top = max(float(price.max()), 0.0)
    twin.set_ylim(min(float(price.min()), 0.0), top * 1.45 if top > 0 else 1.0)
    twin.set_ylabel(f"import price, {cfg.site.currency}/kWh", color="crimson")
    twin.legend(loc="upper right", fontsize=8)

    ax2.step(x, ext(f["carbon"].to_numpy()), where="post", color="darkgreen",
             label=f"grid carbon intensity ({s.inputs.carbon_kind})")
    ax2.set_ylabel("gCO2/kWh", color="darkgreen")
    ax2.legend(loc="upper left", fontsize=8)

    cap = sum(b.capacity_kwh for b in cfg.battery)
    tank_cap = sum(t.capacity_kg for t in cfg.hydrogen_tank)
    # levels are at the end of each step
    ends = [t + step for t in index]
    if cap:
        ax3.plot(ends, 100 * f["soc_kwh"].to_numpy() / cap, color="#3a86ff", label="battery SOC")
    if tank_cap:
        ax3.plot(ends, 100 * f["tank_kg"].to_numpy() / tank_cap, color="#e76f51",
                 label="hydrogen tank")
    ax3.set_ylim(0, 100)
    ax3.set_ylabel("% full")
    if cap or tank_cap:
        ax3.legend(loc="upper left", fontsize=8)
    formatter = mdates.DateFormatter("%a %H:%M", tz=x[0].tzinfo)  # type: ignore[no-untyped-call]
    ax3.xaxis.set_major_formatter(formatter)
    ax3.set_xlabel(f"local time ({tz})")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
