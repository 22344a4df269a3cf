"""A registered model made ready to serve: loaded, its feature function prepared, its domain known, smoke-tested.

    lookups = Lookups(settings)                                  # lookup tables of feature functions
    model = load_version(settings, "flights-late", "champion", lookups)
    decorated, X = model.prepare(raw_pdf)                       # decorate, then the model's input frame
    scores = model.predict(X)                                    # P(positive) or the regression value

Loading goes through `model_contract.load_pyfunc` (`mlflow.pyfunc.load_model`, so the MLmodel, its
signature and input example are the ones MLflow would serve) and then predicts with the sklearn pipeline inside it: requests are
validated before they get here, so pyfunc's own per-call schema enforcement would only repeat work.
`smoke_test` checks, for every version before it serves, that this shortcut gives exactly what
`pyfunc.predict` gives on the model's input example, and that an all-null raw row goes through the
whole decorate -> predict path.

Lookups: a feature function's lookup tables (e.g. weather and planes for `flights_context`) are read
once through `workbench.data.load` (audited, masked) and kept as a parquet snapshot under
`settings.serving_cache_dir`, so `workbench serve` workers and restarts within
`serving_lookup_max_age` seconds need no Spark session.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import features as feature_functions
from .. import model_contract, registry
from ..config import Settings
from ..errors import ServingError, WorkbenchError
from ..model_contract import SCHEMA_ARTIFACT, ModelSpec
from ..storage import atomic_write_bytes, atomic_write_text

__all__ = ["LoadedModel", "Domain", "Lookups", "load_version", "smoke_test", "raw_kinds"]

log = logging.getLogger("workbench.serving")

SNAPSHOT_META = "snapshot.json"

# catalog / validation type -> the JSON kind a request must send
_KINDS = {
    "int": "integer",
    "integer": "integer",
    "long": "integer",
    "short": "integer",
    "bigint": "integer",
    "double": "number",
    "float": "number",
    "decimal": "number",
    "string": "string",
    "timestamp": "timestamp",
    "date": "timestamp",
    "boolean": "boolean",
    "bool": "boolean",
}


@dataclass(frozen=True)
class Domain:
    """The trained domain of the model's input columns: numeric ranges and categorical values.

    Values outside it are served and flagged (`out_of_domain`), never rejected."""

    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, frozenset] = field(default_factory=dict)
    source: str = "none"  # "training schema" | "pipeline encoder" | "none"

    def check(self, X: pd.DataFrame) -> list[list[str]]:
        """Per row, the names of the columns whose value lies outside the trained domain (nulls never do)."""
        flags = np.zeros((len(X), 0), dtype=bool)
        names: list[str] = []
        columns = []
        for col, (lo, hi) in self.ranges.items():
            if col in X.columns:
                v = X[col].to_numpy(dtype="float64", na_value=np.nan)
                columns.append((v < lo) | (v > hi))
                names.append(col)
        for col, allowed in self.categories.items():
            if col in X.columns:
                s = X[col]
                columns.append((s.notna() & ~s.isin(allowed)).to_numpy())
                names.append(col)
        if not columns:
            return [[] for _ in range(len(X))]
        flags = np.column_stack(columns)
        rows = np.flatnonzero(flags.any(axis=1))
        out: list[list[str]] = [[] for _ in range(len(X))]
        for r in rows:
            out[r] = [names[j] for j in np.flatnonzero(flags[r])]
        return out

    @classmethod
    def from_schema(cls, schema, columns: list[str]) -> Domain:
        ranges, categories = {}, {}
        for col in columns:
            c = schema.columns.get(col)
            if c is None:
                continue
            if c.type in ("integer", "float") and c.min is not None and c.max is not None:
                ranges[col] = (float(c.min), float(c.max))
            elif c.type == "string" and c.domain is not None:
                categories[col] = frozenset(c.domain)
        return cls(ranges, categories, "training schema")

    @classmethod
    def from_pipeline(cls, pipeline, spec: ModelSpec) -> Domain:
        """Categories seen by the fitted one-hot encoder (models logged before training schemas existed)."""
        try:
            encoder = pipeline.named_steps["preprocess"].named_transformers_["cat"].named_steps["onehot"]
            cats = {
                col: frozenset(str(v) for v in values if v != "(missing)")
                for col, values in zip(spec.categorical, encoder.categories_)
            }
            return cls({}, cats, "pipeline encoder")
        except (AttributeError, KeyError, TypeError):
            return cls()


@dataclass
class LoadedModel:
    """One registered version, ready to predict. Immutable once loaded; reload swaps whole objects."""

    name: str
    version: int
    ref: str  # the alias (or version) it was loaded for
    spec: ModelSpec
    pipeline: Any
    decorator: feature_functions.Decorator
    domain: Domain
    raw_columns: tuple[str, ...]
    raw_kinds: dict[str, str]  # raw column -> JSON kind (integer, number, string, timestamp, boolean, any)
    input_example: pd.DataFrame | None = None
    run_id: str | None = None
    loaded_at: float = field(default_factory=time.time)
    pyfunc: Any = None
    compiled: Any = None  # serving.compiled.CompiledPlan when proven equal to pyfunc (serving.fastpath.attach)
    path: str = "pandas"  # which path answers: "compiled (...)" or "pandas (why)"
    proof_rows: int = 0  # rows the compiled plan was proven equal to pyfunc on

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def is_classifier(self) -> bool:
        return self.spec.task == "classification"

    def prepare(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(decorated frame, model input) for raw rows, with the model's own feature function."""
        decorated = self.decorator.apply_pandas(raw)
        X = feature_functions.model_frame(decorated, list(self.spec.numeric), list(self.spec.categorical))
        return decorated, X

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """P(positive class) for a classifier (what pyfunc's predict_proba gives in column 1), else predictions."""
        if self.is_classifier:
            return np.asarray(self.pipeline.predict_proba(X))[:, 1].astype("float64")
        return np.asarray(self.pipeline.predict(X), dtype="float64").reshape(-1)

    def labels(self, scores: np.ndarray) -> np.ndarray | None:
        return (scores >= self.spec.decision_threshold).astype("int64") if self.is_classifier else None


# ---- lookups of feature functions -------------------------------------------------------------------
class Lookups:
    """Prepared feature-function decorators, with their lookup tables snapshotted locally.

    `frames` injects lookup tables directly ({function name: {lookup key: DataFrame}}), e.g. in tests."""

    def __init__(self, settings: Settings, spark=None, frames: dict[str, dict[str, pd.DataFrame]] | None = None):
        self.settings = settings
        self.spark = spark
        self._frames = dict(frames or {})
        self._decorators: dict[str, feature_functions.Decorator] = {}
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        return self.settings.path("serving_cache_dir")

    def decorator(self, name: str) -> feature_functions.Decorator:
        with self._lock:
            if name not in self._decorators:
                self._decorators[name] = self._prepare(name)
            return self._decorators[name]

    def _prepare(self, name: str) -> feature_functions.Decorator:
        function = feature_functions.get(name)
        if not function.lookups:
            return function.prepare(self.settings, lookups={})
        if name in self._frames:
            return function.prepare(self.settings, lookups=self._frames[name])
        frames = read_snapshot(self.folder, function, self.settings.serving_lookup_max_age)
        if frames is None:
            log.warning(
                "No fresh lookup snapshot for feature function '%s': reading its lookups through "
                "workbench.data.load (this starts Spark in the serving process).",
                name,
            )
            frames = write_snapshot(self.folder, function, self.settings, self.spark)
        return function.prepare(self.settings, lookups=frames)


def _snapshot_folder(folder: Path, function) -> Path:
    return Path(folder) / function.name


def read_snapshot(folder: Path, function, max_age: int) -> dict[str, pd.DataFrame] | None:
    """The snapshot of `function`'s lookups if present, complete and younger than `max_age` seconds."""
    where = _snapshot_folder(folder, function)
    meta_path = where / SNAPSHOT_META
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    wanted = {key: [dataset, list(cols)] for key, (dataset, cols) in function.lookups.items()}
    if meta.get("lookups") != wanted or time.time() - float(meta.get("created", 0)) > max_age:
        return None
    try:
        return {key: pd.read_parquet(where / f"{key}.parquet") for key in function.lookups}
    except OSError:
        return None


def write_snapshot(
    folder: Path, function, settings: Settings, spark=None, frames: dict[str, pd.DataFrame] | None = None
) -> dict[str, pd.DataFrame]:
    """Keep `function`'s lookups as parquet (owner-only): `frames` if given, else read through workbench.data.load."""
    if frames is None:
        frames = dict(function.prepare(settings, spark).lookups)
    where = _snapshot_folder(folder, function)
    where.mkdir(parents=True, exist_ok=True)
    os.chmod(Path(folder), 0o700)
    for key, frame in frames.items():
        buffer = io.BytesIO()
        plain = frame.copy(deep=False)
        plain.attrs = {}  # Spark Connect's toPandas leaves plan metrics there (not serialisable)
        plain.to_parquet(buffer, index=False)
        atomic_write_bytes(where / f"{key}.parquet", buffer.getvalue())
    meta = {
        "created": time.time(),
        "function": function.name,
        "lookups": {key: [dataset, list(cols)] for key, (dataset, cols) in function.lookups.items()},
        "rows": {key: int(len(frame)) for key, frame in frames.items()},
    }
    atomic_write_text(where / SNAPSHOT_META, json.dumps(meta))  # written last: marks the snapshot complete
    return frames


def snapshot_lookups(settings: Settings, function_names, spark=None, force: bool = False) -> list[str]:
    """Make sure every named feature function has a fresh lookup snapshot; returns the ones (re)written."""
    written = []
    for name in dict.fromkeys(function_names):
        function = feature_functions.get(name)
        if not function.lookups:
            continue
        if (
            force
            or read_snapshot(settings.path("serving_cache_dir"), function, settings.serving_lookup_max_age) is None
        ):
            if spark is None:
                from ..spark import get_spark

                spark = get_spark("workbench-serve-lookups", settings)
            write_snapshot(settings.path("serving_cache_dir"), function, settings, spark)
            written.append(name)
    return written


# ---- loading -----------------------------------------------------------------------------------------
def raw_kinds(spec: ModelSpec, settings: Settings, signature_inputs: dict[str, str] | None = None) -> dict[str, str]:
    """What JSON kind each raw column must have: from the catalog's column types of the model's dataset,
    else from the model signature (numeric -> number, categorical -> string), else any scalar."""
    kinds: dict[str, str] = {}
    catalog_types: dict[str, str] = {}
    if spec.dataset:
        try:
            from ..data.catalog import load_catalog

            catalog_types = {c.name: c.type for c in load_catalog(settings).get(spec.dataset).columns}
        except WorkbenchError:
            catalog_types = {}
    for col in spec.raw_columns:
        if col in catalog_types and catalog_types[col].lower() in _KINDS:
            kinds[col] = _KINDS[catalog_types[col].lower()]
        elif signature_inputs and col in signature_inputs:
            kinds[col] = _KINDS.get(signature_inputs[col], "any")
        elif col in spec.numeric:
            kinds[col] = "number"
        elif col in spec.categorical:
            kinds[col] = "string"
        else:
            kinds[col] = "any"
    return kinds


def _domain(pyfunc, pipeline, spec: ModelSpec, settings: Settings) -> Domain:
    run_id = getattr(pyfunc.metadata, "run_id", None)
    if run_id:
        try:
            schema = model_contract.training_schema(run_id, settings)
            if schema is not None:
                return Domain.from_schema(schema, spec.features)
            log.info("Model run %s has no %s; using the encoder's categories as the domain.", run_id, SCHEMA_ARTIFACT)
        except Exception as exc:  # an unreadable training schema
            log.info(
                "Model run %s has no usable %s (%s); using the encoder's categories as the domain.",
                run_id,
                SCHEMA_ARTIFACT,
                exc.__class__.__name__,
            )
    return Domain.from_pipeline(pipeline, spec)


def load_version(settings: Settings, name: str, ref: str | int, lookups: Lookups) -> LoadedModel:
    """Resolve `ref` (an alias or a version number), load that version, prepare and smoke-test it.

    Raises ServingError (or RegistryError) naming the model and what failed; never returns a model that
    failed its smoke test."""
    info = registry.get_version(name, ref, settings)
    pyfunc = model_contract.load_pyfunc(registry.model_uri(name, info.version), settings, error=ServingError)
    try:
        spec = ModelSpec.from_model(pyfunc)
        pipeline = pyfunc.get_raw_model()
    except (WorkbenchError, NotImplementedError) as exc:
        raise ServingError(f"Model '{name}' version {info.version} ('{ref}') is not a workbench model: {exc}") from exc
    _single_threaded(pipeline)
    try:
        decorator = lookups.decorator(spec.feature_function)
    except WorkbenchError as exc:
        raise ServingError(
            f"Model '{name}' version {info.version} ('{ref}'): its feature function "
            f"'{spec.feature_function}' cannot be prepared: {exc}"
        ) from exc
    signature = pyfunc.metadata.get_input_schema()
    sig_types = {c.name: str(c.type).split(".")[-1].lower() for c in signature.inputs} if signature is not None else {}
    example = pyfunc.input_example if isinstance(pyfunc.input_example, pd.DataFrame) else None
    model = LoadedModel(
        name=name,
        version=int(info.version),
        ref=str(ref),
        spec=spec,
        pipeline=pipeline,
        decorator=decorator,
        domain=_domain(pyfunc, pipeline, spec, settings),
        raw_columns=tuple(spec.raw_columns),
        raw_kinds=raw_kinds(spec, settings, sig_types),
        input_example=example,
        run_id=getattr(pyfunc.metadata, "run_id", None),
        pyfunc=pyfunc,
    )
    smoke_test(model)
    from .fastpath import attach

    attach(model, settings)  # the compiled plan, when it provably answers as pyfunc does
    return model


def _single_threaded(pipeline) -> None:
    """Serving parallelises across requests; threads inside one small batch only add overhead."""
    try:
        estimator = pipeline.steps[-1][1]
        if "n_jobs" in estimator.get_params():
            estimator.set_params(n_jobs=1)
    except (AttributeError, IndexError, ValueError):
        pass


def smoke_test(model: LoadedModel) -> None:
    """Raise ServingError unless the model predicts sensibly and exactly like pyfunc would."""
    where = f"Model '{model.name}' version {model.version} ('{model.ref}') failed its smoke test"
    try:
        if model.input_example is not None and len(model.input_example):
            X = feature_functions.model_frame(
                model.input_example, list(model.spec.numeric), list(model.spec.categorical)
            )
            ours = model.predict(X)
            if model.pyfunc is not None:
                theirs = np.asarray(model.pyfunc.predict(X))
                theirs = theirs[:, 1] if model.is_classifier and theirs.ndim == 2 else theirs.reshape(-1)
                if not np.allclose(ours, theirs.astype("float64"), rtol=0, atol=1e-12, equal_nan=True):
                    raise ServingError(f"{where}: the pipeline and pyfunc.predict disagree on the input example.")
            _check_scores(ours, len(X), model, where)
        raw = pd.DataFrame({c: pd.Series([None], dtype="object") for c in model.raw_columns})
        _, X = model.prepare(raw)
        _check_scores(model.predict(X), 1, model, where, allow_nan=False)
    except ServingError:
        raise
    except Exception as exc:
        raise ServingError(
            f"{where}: {exc.__class__.__name__} while predicting. The version stays out of service."
        ) from exc


def _check_scores(scores: np.ndarray, n: int, model: LoadedModel, where: str, allow_nan: bool = False) -> None:
    if scores.shape != (n,):
        raise ServingError(f"{where}: expected {n} prediction(s), got shape {scores.shape}.")
    if not allow_nan and not np.all(np.isfinite(scores)):
        raise ServingError(f"{where}: it returns non-finite predictions.")
    if model.is_classifier and np.any((scores < 0) | (scores > 1)):
        raise ServingError(f"{where}: a classifier returned probabilities outside [0, 1].")
