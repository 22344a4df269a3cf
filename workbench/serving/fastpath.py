"""The pandas-free request path of one loaded version: raw rows as columns -> decorated -> model input -> scores.

- `RawBatch`: a micro-batch's validated rows as columns (one list per raw column), built once per batch; the
  pandas frame of the same rows only when a version serves through the pandas path.
- `Frame`: the model input of some rows as columns (numeric float64 with NaN, categorical object with None) -
  what `features.model_frame` gives, without the DataFrame; the log rows and the domain flags come from it.
- `attach(model, settings)`: at load, compile the version's pipeline (`compiled.py`), check that its feature
  function has a fast twin and that its raw columns have kinds the columnar path converts exactly as pandas does,
  and prove that the compiled plan equals `pyfunc.predict` on the model's input example, on rows built from its
  trained domain (every category, nulls, each numeric bound) and on the stored sample of its dataset's raw rows
  (`snapshot_sample`, written by `workbench serve` next to the lookup snapshots) - there the fast decoration must
  also equal the pandas reference. Then `model.compiled` is set and `model.path` says
  "compiled (...)"; otherwise `model.path` says "pandas (why)" and the version serves as before.
- `model_input` / `predict`: one version's input and scores for a batch, on whichever path it has.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import features as feature_functions
from .compiled import NotCompilable, compile_pipeline

__all__ = ["RawBatch", "Frame", "attach", "model_input", "predict", "check_domain", "snapshot_sample", "sample_path"]

log = logging.getLogger("workbench.serving")

PROOF_ATOL = 1e-12
SAMPLE_ROWS = 2000  # raw rows of a model's dataset kept for the proof at load


def sample_path(settings, spec) -> Path:
    key = hashlib.sha256("|".join([spec.dataset, *spec.raw_columns]).encode()).hexdigest()[:16]
    return settings.path("serving_cache_dir") / "samples" / f"{spec.dataset or 'none'}-{key}.parquet"


def snapshot_sample(settings, spec, spark=None, force: bool = False) -> Path | None:
    """Keep SAMPLE_ROWS raw rows of the model's dataset (read through `workbench.data.load`: audited, masked) as
    parquet under the serving cache (owner-only); reused for `serving_lookup_max_age` seconds."""
    if not spec.dataset:
        return None
    path = sample_path(settings, spec)
    if not force and path.exists() and time.time() - path.stat().st_mtime < settings.serving_lookup_max_age:
        return path
    from ..data import load
    from ..storage import atomic_write_bytes

    if spark is None:
        from ..spark import get_spark

        spark = get_spark("workbench-serve-sample", settings)
    frame = (
        load(
            spec.dataset,
            columns=list(spec.raw_columns),
            purpose="serving: proof sample",
            settings=settings,
            spark=spark,
        )
        .limit(SAMPLE_ROWS)
        .toPandas()
    )
    frame.attrs = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent.parent, 0o700)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _json_values(raw: pd.DataFrame) -> dict[str, list]:
    return {c: raw[c].astype(object).where(raw[c].notna(), None).tolist() for c in raw.columns}


@dataclass
class RawBatch:
    rows: list[dict]
    columns: list[str]
    cols: dict[str, list]
    n: int

    @classmethod
    def of(cls, rows: list[dict], columns: list[str]) -> RawBatch:
        return cls(rows, columns, {c: [r.get(c) for r in rows] for c in columns}, len(rows))

    @classmethod
    def concat(cls, parts: list[RawBatch]) -> RawBatch:
        rows = [r for p in parts for r in p.rows]
        return cls.of(rows, parts[0].columns if parts else [])

    def take(self, idx) -> RawBatch:
        return RawBatch.of([self.rows[i] for i in idx], self.columns)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame.from_records(self.rows, columns=self.columns)


@dataclass
class Frame:
    cols: dict[str, np.ndarray]
    types: dict[str, str]  # column -> "double" | "string"
    n: int

    @classmethod
    def from_pandas(cls, X: pd.DataFrame) -> Frame:
        cols, types = {}, {}
        for c in X.columns:
            if X[c].dtype == "float64":
                cols[c], types[c] = X[c].to_numpy(dtype="float64"), "double"
            else:
                cols[c], types[c] = X[c].to_numpy(dtype=object, na_value=None), "string"
        return cls(cols, types, len(X))

    def to_pandas(self) -> pd.DataFrame:
        return pd.DataFrame(self.cols)

    def take(self, idx) -> Frame:
        idx = np.asarray(idx, dtype="int64")
        return Frame({c: a[idx] for c, a in self.cols.items()}, self.types, len(idx))

    @classmethod
    def blank(cls, like: Frame, n: int) -> Frame:
        return cls(
            {c: np.full(n, np.nan) if t == "double" else np.full(n, None, dtype=object) for c, t in like.types.items()},
            like.types,
            n,
        )

    @classmethod
    def concat(cls, parts: list[Frame]) -> Frame:
        first = parts[0]
        return cls(
            {c: np.concatenate([p.cols[c] for p in parts]) for c in first.cols}, first.types, sum(p.n for p in parts)
        )


# ---- per version ----------------------------------------------------------------------------------------------
def _floats(values) -> np.ndarray:
    """`pd.to_numeric(errors="coerce").astype("float64")` for a list of JSON scalars."""
    try:
        return np.array([math.nan if v is None else v for v in values], dtype="float64")
    except (TypeError, ValueError):
        out = np.empty(len(values), dtype="float64")
        for i, v in enumerate(values):
            try:
                out[i] = math.nan if v is None else float(v)
            except (TypeError, ValueError):
                out[i] = math.nan
        return out


def _strings(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [v if v is None or type(v) is str else str(v) for v in values]
    return out


def model_input(model, raw: RawBatch, decorated: dict) -> Frame:
    """The model input of the batch for `model` (its feature function's output cached in `decorated`)."""
    numeric, categorical = list(model.spec.numeric), list(model.spec.categorical)
    fn = model.spec.feature_function
    if model.compiled is not None:
        key = ("fast", fn)
        if key not in decorated:
            decorated[key] = model.decorator.fast(raw.cols, raw.n) if model.decorator.fast else {}
        added = decorated[key]
        cols, types = {}, {}
        for c in numeric:
            cols[c], types[c] = (added[c] if c in added else _floats(raw.cols[c])), "double"
        for c in categorical:
            cols[c], types[c] = (added[c] if c in added else _strings(raw.cols[c])), "string"
        return Frame(cols, types, raw.n)
    if fn not in decorated:
        decorated[fn] = model.decorator.apply_pandas(raw.frame())
    X = feature_functions.model_frame(decorated[fn], numeric, categorical).reset_index(drop=True)
    return Frame.from_pandas(X)


def predict(model, X: Frame) -> np.ndarray:
    if model.compiled is not None:
        return model.compiled.predict(X.cols, X.n)
    return model.predict(X.to_pandas())


def check_domain(domain, X: Frame) -> list[list[str]]:
    """`Domain.check` on columns: per row, the columns outside the trained domain (nulls never are)."""
    flags, names = [], []
    for col, (lo, hi) in domain.ranges.items():
        if col in X.cols:
            v = np.asarray(X.cols[col], dtype="float64")
            flags.append((v < lo) | (v > hi))
            names.append(col)
    for col, allowed in domain.categories.items():
        if col in X.cols:
            flags.append(np.fromiter((v is not None and v not in allowed for v in X.cols[col]), bool, X.n))
            names.append(col)
    out: list[list[str]] = [[] for _ in range(X.n)]
    if not flags:
        return out
    matrix = np.column_stack(flags)
    for r in np.flatnonzero(matrix.any(axis=1)):
        out[r] = [names[j] for j in np.flatnonzero(matrix[r])]
    return out


def _why_not(model) -> str | None:
    spec, deco = model.spec, model.decorator
    added = set(deco.function.adds)
    if added and deco.fast is None:
        return f"the feature function '{spec.feature_function}' has no fast path"
    for c in spec.categorical:
        if c not in added and model.raw_kinds.get(c, "any") != "string":
            return f"the categorical column '{c}' is not a string column (pandas spells its numbers per batch)"
    for c in spec.numeric:
        if c not in added and model.raw_kinds.get(c, "any") not in ("integer", "number", "boolean"):
            return f"the numeric column '{c}' is of kind '{model.raw_kinds.get(c, 'any')}'"
    return None


def proof_rows(model) -> pd.DataFrame:
    """The input example plus rows built from the trained domain: each category of each categorical column,
    each numeric column at its bounds and middle, and a row of nulls (as `model_frame` types them)."""
    numeric, categorical = list(model.spec.numeric), list(model.spec.categorical)
    parts = []
    if model.input_example is not None and len(model.input_example):
        parts.append(feature_functions.model_frame(model.input_example, numeric, categorical))
    base = parts[0].iloc[[0]] if parts else None
    rows = []
    domain = model.domain
    lengths = [len(domain.categories.get(c, ())) for c in categorical] + [3]
    for r in range(max(lengths)):
        row = {}
        for c in numeric:
            lo, hi = domain.ranges.get(c, (None, None))
            if lo is None:
                row[c] = base[c].iloc[0] if base is not None else math.nan
            else:
                row[c] = (lo, hi, (lo + hi) / 2)[r % 3]
        for c in categorical:
            cats = sorted(domain.categories.get(c, ()))
            row[c] = cats[r % len(cats)] if cats else (base[c].iloc[0] if base is not None else None)
        rows.append(row)
    rows.append(dict.fromkeys([*numeric, *categorical]))
    parts.append(feature_functions.model_frame(pd.DataFrame(rows), numeric, categorical))
    return pd.concat(parts, ignore_index=True)


def attach(model, settings=None) -> None:
    """Give `model` its compiled plan when it can have one and it provably answers like pyfunc (see above)."""
    reason = _why_not(model)
    plan = None
    if reason is None:
        try:
            plan = compile_pipeline(model.pipeline, model.spec.numeric, model.spec.categorical, model.is_classifier)
        except NotCompilable as exc:
            reason = str(exc)
    if plan is not None:
        try:
            X = proof_rows(model)
            sample = _sample(model, settings)
            if sample is not None:
                reference = feature_functions.model_frame(
                    model.decorator.apply_pandas(sample), list(model.spec.numeric), list(model.spec.categorical)
                ).reset_index(drop=True)
                model.compiled = plan
                fast = model_input(model, RawBatch([], list(sample.columns), _json_values(sample), len(sample)), {})
                model.compiled = None
                if not _frames_equal(fast, Frame.from_pandas(reference)):
                    raise NotCompilable("the fast decoration differs from the pandas reference on the stored sample")
                X = pd.concat([X, reference], ignore_index=True)
            theirs = _pyfunc_scores(model, X)
            ours = plan.predict(Frame.from_pandas(X).cols, len(X))
        except NotCompilable as exc:
            reason, plan = str(exc), None
        except Exception as exc:  # e.g. an encoder refusing a null: the pandas path keeps the behaviour
            reason, plan = f"the proof rows could not be predicted ({exc.__class__.__name__})", None
        else:
            if not np.allclose(ours, theirs, rtol=0, atol=PROOF_ATOL, equal_nan=True):
                worst = float(np.nanmax(np.abs(ours - theirs)))
                reason = f"the compiled plan differs from pyfunc.predict by {worst:.3g} on {len(X)} proof rows"
                plan = None
    model.compiled = plan
    model.proof_rows = len(X) if plan is not None else 0
    model.path = f"compiled ({plan.description})" if plan is not None else f"pandas ({reason})"
    log.info("Model %s serves through the %s path.", model.label, model.path)


def _pyfunc_scores(model, X: pd.DataFrame) -> np.ndarray:
    if model.pyfunc is None:
        return model.predict(X)
    theirs = np.asarray(model.pyfunc.predict(X))
    theirs = theirs[:, 1] if model.is_classifier and theirs.ndim == 2 else theirs.reshape(-1)
    return theirs.astype("float64")


def _sample(model, settings) -> pd.DataFrame | None:
    if settings is None or not model.spec.dataset:
        return None
    path = sample_path(settings, model.spec)
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError):
        log.info("No stored sample for %s (%s): proving its compiled plan without one.", model.label, path)
        return None
    missing = [c for c in model.spec.raw_columns if c not in frame.columns]
    return None if missing else frame[list(model.spec.raw_columns)]


def _frames_equal(a: Frame, b: Frame) -> bool:
    for c, t in b.types.items():
        x, y = a.cols.get(c), b.cols[c]
        if x is None or len(x) != len(y):
            return False
        if t == "double":
            if not np.array_equal(np.asarray(x, dtype="float64"), y, equal_nan=True):
                return False
        elif list(x) != list(y):
            return False
    return True
