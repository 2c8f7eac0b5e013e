"""PV: the forecast is an upper bound; what is not used is curtailed."""

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
)
from optimizer.problem import Problem, Pv


class PvBlock(AssetBlock):
    def __init__(self, name: str, curtailable: bool) -> None:
        super().__init__(name)
        self.curtailable = curtailable

    def build(self, b: Any, ctx: Context) -> None:
        self.ctx = ctx
        mutable(b, "available", ctx)
        lower = (lambda b, t: 0.0) if self.curtailable else (lambda b, t: b.available[t])
        b.out = pyo.Var(ctx.steps, bounds=lambda b, t: (lower(b, t), b.available[t]))
        self.block = b

    def injections(self) -> dict[str, list[Any]]:
        return {ELECTRICITY: [self.block.out[t] for t in range(self.ctx.n_steps)]}

    def objective_terms(self) -> list[ObjectiveTerm]:
        return []

    def update(self, spec: Pv, problem: Problem) -> None:
        self.set_series(self.block.available, spec.available_kw)

    def extract(self, spec: Pv, problem: Problem) -> AssetResult:
        out = self.values(self.block.out)
        curtailed = [max(0.0, a - o) for a, o in zip(spec.available_kw, out, strict=True)]
        return AssetResult(series={f"{self.name}.output_kw": out,
                                   f"{self.name}.curtailed_kw": curtailed})
