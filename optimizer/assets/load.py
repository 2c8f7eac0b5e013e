"""Inflexible load: a fixed draw from the electricity bus."""

from __future__ import annotations

from typing import Any

from optimizer.assets.base import (
    ELECTRICITY,
    AssetBlock,
    AssetResult,
    Context,
    ObjectiveTerm,
    mutable,
)
from optimizer.problem import Load, Problem


class LoadBlock(AssetBlock):
    def build(self, b: Any, ctx: Context) -> None:
        self.ctx = ctx
        mutable(b, "demand", ctx)
        self.block = b

    def injections(self) -> dict[str, list[Any]]:
        return {ELECTRICITY: [-self.block.demand[t] for t in range(self.ctx.n_steps)]}

    def objective_terms(self) -> list[ObjectiveTerm]:
        return []

    def update(self, spec: Load, problem: Problem) -> None:
        self.set_series(self.block.demand, spec.demand_kw)

    def extract(self, spec: Load, problem: Problem) -> AssetResult:
        return AssetResult(series={f"{self.name}.demand_kw": [float(x) for x in spec.demand_kw]})
