"""Push new parameter values into a persistent HiGHS model in bulk.

Pyomo's persistent interface re-evaluates every mutable expression one by one on each
re-solve (~10 us each; tens of thousands on a 48 h horizon with EV sessions). Here those
expressions are compiled once into a few vectorised templates (grouped by shape), evaluated
with numpy from a flat array of parameter values, and written with HiGHS's batch calls.
The persistent interface still owns the model, the variable/row maps and solution loading.
The objective's constant offset is not pushed: it does not change the optimum, and plan costs
are computed from the solution.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numvalue import native_numeric_types

TINY = 1e-12


class ParamStore:
    """All mutable parameter values of a model in one array, written by the asset blocks."""

    def __init__(self, model: Any) -> None:
        self.position: dict[int, int] = {}
        self.slices: dict[int, tuple[int, int]] = {}
        self.datas: list[Any] = []
        for comp in model.component_objects(pyo.Param, descend_into=True):
            if not comp.mutable:
                continue
            start = len(self.datas)
            for data in comp.values():
                self.position[id(data)] = len(self.datas)
                self.datas.append(data)
            self.slices[id(comp)] = (start, len(self.datas) - start)
        self.values = np.array([float(pyo.value(d)) for d in self.datas], dtype=float)

    def series(self, param: Any, data: Any) -> None:
        start, n = self.slices[id(param)]
        values = np.asarray(data, dtype=float)
        # magnitudes below 1e-12 are noise; denormal inputs have crashed HiGHS
        self.values[start:start + n] = np.where(np.abs(values) < TINY, 0.0, values)

    def scalar(self, param: Any, value: float) -> None:
        self.values[self.position[id(param)]] = 0.0 if abs(value) < TINY else float(value)

    def sync_to_pyomo(self) -> None:
        """Write the array into the Pyomo parameters (before Pyomo itself reads them)."""
        for data, v in zip(self.datas, self.values, strict=True):
            data.set_value(float(v))


class Unsupported(Exception):
    pass


_OPS = {
    "SumExpression": " + ", "NPV_SumExpression": " + ",
    "ProductExpression": " * ", "NPV_ProductExpression": " * ",
    "DivisionExpression": " / ", "NPV_DivisionExpression": " / ",
    "PowExpression": " ** ", "NPV_PowExpression": " ** ",
}


def _template(expr: Any, store: ParamStore, slots: list[tuple[str, float]]) -> str:
    """Source text with one placeholder per leaf; leaves appended to `slots` as
    ('p', position) or ('c', constant)."""
    if type(expr) in native_numeric_types:
        slots.append(("c", float(expr)))
        return f"s{len(slots) - 1}"
    if getattr(expr, "is_parameter_type", lambda: False)():
        pos = store.position.get(id(expr))
        if pos is None:
            raise Unsupported(f"parameter {expr} is not in the store")
        slots.append(("p", float(pos)))
        return f"s{len(slots) - 1}"
    name = type(expr).__name__
    args: Any = getattr(expr, "args", None)
    if args is None:
        if getattr(expr, "is_constant", lambda: False)():
            slots.append(("c", float(pyo.value(expr))))
            return f"s{len(slots) - 1}"
        raise Unsupported(f"cannot compile expression of type {name}")
    if name in _OPS:
        return "(" + _OPS[name].join(_template(a, store, slots) for a in args) + ")"
    if name in ("NegationExpression", "NPV_NegationExpression"):
        return "(-" + _template(args[0], store, slots) + ")"
    if name in ("NPV_MaxExpression", "NPV_MinExpression"):
        fn = "_max" if "Max" in name else "_min"
        return f"{fn}(" + ", ".join(_template(a, store, slots) for a in args) + ")"
    if getattr(expr, "is_constant", lambda: False)():
        slots.append(("c", float(pyo.value(expr))))
        return f"s{len(slots) - 1}"
    raise Unsupported(f"cannot compile expression of type {name}")


def _max(*xs: Any) -> Any:
    out = xs[0]
    for x in xs[1:]:
        out = np.maximum(out, x)
    return out


def _min(*xs: Any) -> Any:
    out = xs[0]
    for x in xs[1:]:
        out = np.minimum(out, x)
    return out


class _Compiled:
    """Many expressions of a few shapes, evaluated together."""

    def __init__(self, exprs: list[Any], store: ParamStore) -> None:
        self.n = len(exprs)
        groups: dict[str, list[tuple[int, list[tuple[str, float]]]]] = defaultdict(list)
        for i, e in enumerate(exprs):
            slots: list[tuple[str, float]] = []
            text = _template(e, store, slots)
            key = text + "|" + "".join(k for k, _ in slots)
            groups[key].append((i, slots))
        self.groups = []
        for key, members in groups.items():
            text = key.split("|")[0]
            kinds = key.split("|")[1]
            targets = np.array([i for i, _ in members], dtype=np.int64)
            arrays = []
            for k, kind in enumerate(kinds):
                col = np.array([slots[k][1] for _, slots in members])
                arrays.append((kind, col.astype(np.int64) if kind == "p" else col))
            try:
                code = compile(text, "<param-expr>", "eval")
            except (SyntaxError, RecursionError, MemoryError) as exc:
                raise Unsupported(f"expression too deep to compile: {exc}") from None
            self.groups.append((code, targets, arrays))

    def evaluate(self, values: np.ndarray) -> np.ndarray:
        out = np.empty(self.n)
        env: dict[str, Any] = {"_max": _max, "_min": _min}
        for code, targets, arrays in self.groups:
            for k, (kind, arr) in enumerate(arrays):
                env[f"s{k}"] = values[arr] if kind == "p" else arr
            out[targets] = eval(code, env)
        return out


class FastUpdater:
    """Compiled data push for a persistent `pyomo.contrib.solver` HiGHS instance."""

    def __init__(self, solver: Any, store: ParamStore) -> None:
        self.solver = solver
        self.store = store
        var_map = solver._pyomo_var_to_solver_var_map
        con_map = solver._pyomo_con_to_solver_con_map
        col_lb, col_ub, cols = [], [], []
        for var_id, (_var, helper) in solver._mutable_bounds.items():
            cols.append(var_map[var_id])
            col_lb.append(helper.lower_expr)
            col_ub.append(helper.upper_expr)
        row_lo, row_hi, rows = [], [], []
        coef_exprs, coef_rc = [], []
        for con, helpers in solver._mutable_helpers.items():
            for h in helpers:
                if hasattr(h, "lower_expr"):
                    rows.append(con_map[con])
                    row_lo.append(h.lower_expr)
                    row_hi.append(h.upper_expr)
                else:
                    coef_rc.append((con_map[con], var_map[h.pyomo_var_id]))
                    coef_exprs.append(h.expr)
        obj = solver._mutable_objective
        obj_cols = [var_map[c.pyomo_var_id] for c in obj.linear_coefs]
        self.cols = np.array(cols, dtype=np.int32)
        self.rows = np.array(rows, dtype=np.int32)
        self.obj_cols = np.array(obj_cols, dtype=np.int32)
        self.coef_rc = coef_rc
        self.col_lb = _Compiled(col_lb, store)
        self.col_ub = _Compiled(col_ub, store)
        self.row_lo = _Compiled(row_lo, store)
        self.row_hi = _Compiled(row_hi, store)
        self.coefs = _Compiled(coef_exprs, store)
        self.obj = _Compiled([c.expr for c in obj.linear_coefs], store)
        self.last_coefs = np.full(len(coef_exprs), np.nan)
        self._check(col_lb + col_ub + row_lo + row_hi + coef_exprs)

    def _check(self, exprs: list[Any]) -> None:
        """The compiled templates must agree with Pyomo's own evaluation."""
        self.store.sync_to_pyomo()
        v = self.store.values
        ours = np.concatenate([self.col_lb.evaluate(v), self.col_ub.evaluate(v),
                               self.row_lo.evaluate(v), self.row_hi.evaluate(v),
                               self.coefs.evaluate(v)])
        theirs = np.array([float(pyo.value(e)) for e in exprs])
        if not np.allclose(ours, theirs, rtol=1e-12, atol=1e-12, equal_nan=True):
            raise Unsupported("compiled parameter expressions disagree with Pyomo")

    def push(self) -> None:
        h = self.solver._solver_model
        v = self.store.values
        self.solver._sol = None
        if self.solver._last_results_object is not None:
            self.solver._last_results_object.solution_loader.invalidate()
        if len(self.cols):
            h.changeColsBounds(len(self.cols), self.cols, self.col_lb.evaluate(v), self.col_ub.evaluate(v))
        if len(self.rows):
            h.changeRowsBounds(len(self.rows), self.rows, self.row_lo.evaluate(v), self.row_hi.evaluate(v))
        if len(self.obj_cols):
            h.changeColsCost(len(self.obj_cols), self.obj_cols, self.obj.evaluate(v))
        coefs = self.coefs.evaluate(v)
        # a zero where the matrix has no entry yet is not pushed (HiGHS ignores it noisily)
        changed = np.nonzero((coefs != self.last_coefs) & ~((coefs == 0) & np.isnan(self.last_coefs)))[0]
        for i in changed:
            r, c = self.coef_rc[i]
            h.changeCoeff(r, c, float(coefs[i]))
        self.last_coefs = coefs
