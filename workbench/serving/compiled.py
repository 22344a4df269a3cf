"""The compiled plan of a sealed pipeline: the fitted ColumnTransformer and estimator as a few array operations.

A fitted model is data. Once, when a version loads, `compile_pipeline(pipeline, numeric, categorical)` reads the
fitted steps and turns them into numpy operations on precomputed arrays and dict lookups:

- `SimpleImputer` (any strategy, NaN as the missing value): `np.where(isnan, statistics_, x)` on numbers, the
  statistic in place of NaN on strings (sklearn leaves None alone there: `X != X`; the encoder sees it);
- `StandardScaler`: `(x - mean_) / scale_`, the same two float operations sklearn does, so the bits are equal;
- `OneHotEncoder` / `OrdinalEncoder`: a dict per column from each category to its output column (or code),
  read by probing the fitted encoder itself with every category it knows (so drop, infrequent categories and
  `handle_unknown` come out exactly as sklearn decides them); an unknown value maps where sklearn maps it, or
  raises where sklearn raises (`handle_unknown="error"`);
- `passthrough` / `drop` steps and transformers;
- the estimator: a LightGBM `Booster` on one contiguous float64 array with `num_threads=1` (what
  `LGBMClassifier.predict_proba` calls underneath), a linear model as a dot product (logistic: `expit` of it,
  as sklearn's binary `predict_proba`).

A step it does not know raises `NotCompilable` naming it; the caller then serves through the pandas path.
`CompiledPlan.predict(columns)` takes the model input as columns (numeric float64 arrays with NaN, categorical
object arrays with None: what `features.model_frame` gives) and returns P(positive class) or the predicted
value. `workbench.serving.model` proves on real rows that it equals `pyfunc.predict` before a version serves.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CompiledPlan", "NotCompilable", "compile_pipeline"]

_NAN = object()  # the key of every NaN in a categorical lookup (NaN != NaN; None is a key of its own, as in sklearn)


class NotCompilable(Exception):
    """The pipeline holds a step (or a setting of one) the compiler does not translate."""


def _is_nan(v) -> bool:
    """What sklearn's SimpleImputer counts as missing in an object column (`X != X`): NaN, not None."""
    return v != v if isinstance(v, (float, np.floating)) else False


def _key(v):
    return _NAN if _is_nan(v) else v


# ---- steps ------------------------------------------------------------------------------------------------------
@dataclass
class _NumImpute:
    fill: np.ndarray

    def __call__(self, block):
        return np.where(np.isnan(block), self.fill, block)


@dataclass
class _ObjImpute:
    fill: list

    def __call__(self, block):
        out = block.copy()
        for j, fill in enumerate(self.fill):
            col = out[:, j]
            for i in range(len(col)):
                if _is_nan(col[i]):
                    col[i] = fill
        return out


@dataclass
class _Scale:
    mean: np.ndarray | None
    scale: np.ndarray | None

    def __call__(self, block):
        out = np.array(block, dtype="float64")
        if self.mean is not None:
            out -= self.mean
        if self.scale is not None:
            out /= self.scale
        return out


@dataclass
class _Lookup:
    """Per input column: {category: output position or code}; `unknown` per column: a position/code, or None
    (raise). `width`: output columns (one-hot), or None (ordinal: one output per input)."""

    maps: list[dict]
    unknown: list[Any]
    width: list[int] | None
    name: str

    def __call__(self, block):
        n = block.shape[0]
        if self.width is None:  # ordinal
            out = np.empty((n, len(self.maps)), dtype="float64")
            for j, mapping in enumerate(self.maps):
                for i in range(n):
                    out[i, j] = self._get(mapping, block[i, j], j)
            return out
        out = np.zeros((n, sum(self.width)), dtype="float64")
        offset = 0
        for j, mapping in enumerate(self.maps):
            for i in range(n):
                pos = self._get(mapping, block[i, j], j)
                if pos >= 0:
                    out[i, offset + pos] = 1.0
            offset += self.width[j]
        return out

    def _get(self, mapping, value, j):
        pos = mapping.get(_key(value))
        if pos is None:
            pos = self.unknown[j]
            if pos is None:
                raise ValueError(f"{self.name}: a category unseen in training (handle_unknown='error')")
        return pos


def _probe(encoder, categories: list, one_hot: bool):
    """Transform each known category through the fitted encoder: {category: position/code} per column."""
    k = len(categories)
    base = [cats[0] for cats in categories]
    widths = list(getattr(encoder, "_n_features_outs", [])) if one_hot else None
    total = len(encoder.get_feature_names_out()) if one_hot else k
    if one_hot and (len(widths) != k or sum(widths) != total):
        raise NotCompilable(f"{type(encoder).__name__}: cannot tell its output columns apart")
    maps, unknown = [], []
    offsets = np.cumsum([0, *widths]) if one_hot else None
    sentinel = "\x00workbench-unseen\x00"
    for j, cats in enumerate(categories):
        rows = np.array([base] * len(cats), dtype=object)
        rows[:, j] = list(cats)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = np.asarray(encoder.transform(rows), dtype="float64")
        mapping = {}
        for r, cat in enumerate(cats):
            mapping[_key(cat)] = _position(out[r], j, offsets)
        maps.append(mapping)
        if encoder.handle_unknown == "error":
            unknown.append(None)
        else:
            row = np.array([base], dtype=object)
            row[0, j] = (
                sentinel if all(isinstance(c, str) for c in cats if c is not None and not _is_nan(c)) else -1.2345e300
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                unknown.append(_position(np.asarray(encoder.transform(row), dtype="float64")[0], j, offsets))
    return maps, unknown, widths


def _position(row: np.ndarray, j: int, offsets):
    if offsets is None:
        return float(row[j])
    part = row[offsets[j] : offsets[j + 1]]
    ones = np.flatnonzero(part)
    if len(ones) > 1 or (len(ones) == 1 and part[ones[0]] != 1.0):
        raise NotCompilable("OneHotEncoder: a category lights more than one column")
    return int(ones[0]) if len(ones) else -1


def _step(step, numeric_block: bool):
    """(callable, output is numeric) for one fitted step."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    name = type(step).__name__
    if step is None or step == "passthrough":
        return None, numeric_block
    if type(step) is SimpleImputer:
        mv = step.missing_values
        if not (isinstance(mv, float) and mv != mv) or step.add_indicator:
            raise NotCompilable(f"{name} with missing_values other than NaN or add_indicator")
        stats = np.asarray(step.statistics_)
        if numeric_block:
            stats = stats.astype("float64")
            if np.isnan(stats).any() and not step.keep_empty_features:
                raise NotCompilable(f"{name} dropping empty features")
            return _NumImpute(stats), True
        return _ObjImpute(list(stats)), False
    if type(step) is StandardScaler:
        if not numeric_block:
            raise NotCompilable(f"{name} on strings")
        mean = np.asarray(step.mean_, dtype="float64") if step.with_mean else None
        scale = np.asarray(step.scale_, dtype="float64") if step.with_std and step.scale_ is not None else None
        return _Scale(mean, scale), True
    if type(step) in (OneHotEncoder, OrdinalEncoder):
        one_hot = type(step) is OneHotEncoder
        if one_hot and getattr(step, "sparse_output", False):
            raise NotCompilable(f"{name} with sparse output")
        if not one_hot and step.handle_unknown not in ("error", "use_encoded_value"):
            raise NotCompilable(f"{name} with handle_unknown={step.handle_unknown!r}")
        maps, unknown, widths = _probe(step, [list(c) for c in step.categories_], one_hot)
        return _Lookup(maps, unknown, widths, name), True
    raise NotCompilable(f"{name} (no compiled form; served through the pandas path)")


@dataclass
class _Block:
    columns: tuple[str, ...]
    numeric: bool  # input as float64 (else object)
    steps: list
    width: int = 0


# ---- estimators -----------------------------------------------------------------------------------------------
def _estimator(est, classifier: bool):
    name = type(est).__name__
    module = type(est).__module__
    if module.startswith("lightgbm"):
        booster = est.booster_
        if classifier and len(getattr(est, "classes_", [])) != 2:
            raise NotCompilable(f"{name} with more than two classes")
        if not isinstance(est.objective_, str):
            raise NotCompilable(f"{name} with a custom objective")

        def lgbm(M):
            return np.asarray(booster.predict(M, raw_score=False, num_threads=1), dtype="float64").reshape(-1)

        return lgbm, "lightgbm booster"
    from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge

    if type(est) is LogisticRegression:
        if len(est.classes_) != 2:
            raise NotCompilable(f"{name} with more than two classes")
        from scipy.special import expit

        coef_t, intercept = np.asarray(est.coef_, dtype="float64").T, np.asarray(est.intercept_, dtype="float64")

        def logistic(M):
            scores = M @ coef_t + intercept
            expit(scores, out=scores)
            return scores.reshape(-1)

        return logistic, "logistic dot product"
    if type(est) in (LinearRegression, Ridge, Lasso, ElasticNet):
        coef_t = np.asarray(est.coef_, dtype="float64").T
        intercept = np.asarray(est.intercept_, dtype="float64")
        if coef_t.ndim != 1:
            raise NotCompilable(f"{name} with several targets")

        def linear(M):
            return (M @ coef_t + intercept).reshape(-1)

        return linear, "linear dot product"
    raise NotCompilable(f"{name} (no compiled form; served through the pandas path)")


@dataclass
class CompiledPlan:
    """The pipeline as array operations. `predict(columns, n)` -> float64 scores (see the module docstring)."""

    blocks: list[_Block]
    width: int
    estimator: Any
    description: str
    steps: list[str] = field(default_factory=list)

    def transform(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """The transformed matrix (n, width), C-contiguous float64: what the estimator receives."""
        M = np.empty((n, self.width), dtype="float64")
        offset = 0
        for block in self.blocks:
            if block.numeric:
                x = np.empty((n, len(block.columns)), dtype="float64")
                for j, c in enumerate(block.columns):
                    x[:, j] = columns[c]
            else:
                x = np.empty((n, len(block.columns)), dtype=object)
                for j, c in enumerate(block.columns):
                    x[:, j] = columns[c]
            for step in block.steps:
                x = step(x)
            M[:, offset : offset + block.width] = x
            offset += block.width
        return M

    def predict(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        return self.estimator(self.transform(columns, n))


def compile_pipeline(pipeline, numeric, categorical, classifier: bool) -> CompiledPlan:
    """The compiled plan of a fitted Pipeline([(..., ColumnTransformer), (..., estimator)]); raises NotCompilable."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    steps = getattr(pipeline, "steps", None)
    if not steps or len(steps) != 2 or not isinstance(steps[0][1], ColumnTransformer):
        raise NotCompilable("a pipeline that is not ColumnTransformer -> estimator")
    ct, est = steps[0][1], steps[1][1]
    numeric, categorical = set(numeric), set(categorical)
    blocks, names = [], []
    for name, trans, cols in ct.transformers_:
        if trans == "drop" or (hasattr(cols, "__len__") and len(cols) == 0):
            continue
        if not isinstance(cols, (list, tuple)) or not all(isinstance(c, str) for c in cols):
            raise NotCompilable(f"transformer '{name}' selects columns other than by name")
        kinds = {c in numeric for c in cols}
        if len(kinds) != 1 or not all(c in numeric or c in categorical for c in cols):
            raise NotCompilable(f"transformer '{name}' mixes numeric and categorical columns")
        is_num = kinds.pop()
        chain = [s for _, s in trans.steps] if isinstance(trans, Pipeline) else [trans]
        fns, cur = [], is_num
        for s in chain:
            fn, cur = _step(s, cur)
            if fn is not None:
                fns.append(fn)
            names.append(type(s).__name__ if s not in (None, "passthrough") else "passthrough")
        if not cur:
            raise NotCompilable(f"transformer '{name}' outputs strings")
        blocks.append(_Block(tuple(cols), is_num, fns))
    estimator, what = _estimator(est, classifier)
    plan = CompiledPlan(blocks, 0, estimator, what, names)
    # widths: run one all-missing row through each block
    for block in blocks:
        cols = {
            c: np.array([np.nan if block.numeric else None], dtype="float64" if block.numeric else object)
            for c in block.columns
        }
        x = np.empty((1, len(block.columns)), dtype="float64" if block.numeric else object)
        for j, c in enumerate(block.columns):
            x[:, j] = cols[c]
        try:
            for step in block.steps:
                x = step(x)
            block.width = x.shape[1]
        except ValueError:  # an encoder that refuses missing values: its width from its maps
            last = [s for s in block.steps if isinstance(s, _Lookup)][-1]
            block.width = sum(last.width) if last.width else len(last.maps)
    plan.width = sum(b.width for b in blocks)
    expected = len(ct.get_feature_names_out())
    if plan.width != expected:
        raise NotCompilable(f"compiled width {plan.width} != the ColumnTransformer's {expected} columns")
    return plan
