"""Explanations of a registered model, in terms of the features its users know.

    ex = load_explainer("models:/NAME@champion")                # pipeline + spec + training window
    rows = sample_rows("DATASET", where="...", n=200)           # raw rows, the columns serving receives
    e = ex.explain(rows)                                        # one SHAP value per raw feature and row
    e.ranking()                                                 # global: mean |SHAP| per feature
    local = ex.local(e, row_id=0)                               # SHAP and LIME for one row + their agreement

Raw rows are decorated by the model's recorded feature function and selected/coerced by its
`ModelSpec`, exactly as serving does, then explained through the sealed pipeline (see
`shap_adapter`). Background rows (for LIME, the model-agnostic fallback and interventional Tree
SHAP) are sampled from the training window recorded in the model's lineage: the dataset and
`train_where` of its training run, narrowed to the time range its training part covered.

The result types live in `results` (so `plots` and `widgets` need not import the explainer), the
MLflow summary in `summary`; every MLflow read goes through `workbench.model_contract`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import model_contract, registry
from ..config import Settings, load_settings
from ..errors import ExplainError
from ..model_contract import ModelSpec
from . import shap_adapter
from .lime_adapter import DEFAULT_SAMPLES, lime_weights
from .results import Explanation, LocalExplanation, TrainingWindow, agreement, compare_rankings

__all__ = [
    "ModelExplainer",
    "Predictor",
    "load_explainer",
    "default_model",
    "sample_rows",
    "training_window",
    "attribution_drift",
    "METHODS",
]

METHODS = ("auto", "tree", "permutation")
_MODEL_REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


# ---- the explainer ----------------------------------------------------------------------------------------
@dataclass
class Predictor:
    """Model input -> P(positive) (classification) or the prediction (regression). Picklable."""

    pipeline: Any
    pyfunc: Any
    task: str

    def __call__(self, X: pd.DataFrame) -> np.ndarray:
        if self.pipeline is not None:
            if self.task == "classification":
                return np.asarray(self.pipeline.predict_proba(X)[:, 1], dtype=np.float64)
            return np.asarray(self.pipeline.predict(X), dtype=np.float64)
        out = self.pyfunc.predict(X)
        out = np.asarray(out.to_numpy() if hasattr(out, "to_numpy") else out, dtype=np.float64)
        return out[:, -1] if out.ndim == 2 else out


class ModelExplainer:
    """A loaded model with what it takes to explain it. Build one with `load_explainer`."""

    def __init__(
        self,
        model_uri: str,
        spec: ModelSpec,
        decorator,
        pipeline=None,
        pyfunc=None,
        *,
        window: TrainingWindow | None = None,
        background: pd.DataFrame | None = None,
        n_background: int = 200,
        method: str = "auto",
        feature_perturbation: str = "tree_path_dependent",
        lime_samples: int = DEFAULT_SAMPLES,
        seed: int = 0,
        version: int | None = None,
        name: str | None = None,
        settings: Settings | None = None,
        spark=None,
    ):
        if method not in METHODS:
            raise ExplainError(f"Parameter 'method' is '{method}'; expected one of {', '.join(METHODS)}.")
        if pipeline is None and pyfunc is None:
            raise ExplainError("A ModelExplainer needs the model: pass `pipeline` or `pyfunc`.")
        self.model_uri, self.spec, self.decorator = model_uri, spec, decorator
        self.pipeline, self.pyfunc = pipeline, pyfunc
        self.window, self.n_background, self.seed = window, int(n_background), int(seed)
        self.requested_method, self.feature_perturbation, self.lime_samples = (
            method,
            feature_perturbation,
            int(lime_samples),
        )
        self.version, self.name = version, name
        self.settings, self._spark = settings, spark
        self._background = background
        self._attributor = None
        self.predictor = Predictor(pipeline, None if pipeline is not None else pyfunc, spec.task)
        self.method = self._choose_method(method)

    # -- pieces ------------------------------------------------------------------------------------
    @property
    def features(self) -> list[str]:
        return self.spec.features

    @property
    def background(self) -> pd.DataFrame:
        """Model-input rows sampled from the training window (loaded on first use)."""
        if self._background is None:
            if self.n_background <= 0 or self.window is None:
                self._background = pd.DataFrame(
                    {c: pd.Series(dtype="float64" if c in self.spec.numeric else object) for c in self.features}
                )
            else:
                raw = sample_rows(
                    self.window.dataset,
                    where=self.window.where,
                    n=self.n_background,
                    seed=self.seed,
                    columns=list(self.spec.raw_columns),
                    purpose=f"explain background for {self.model_uri}",
                    settings=self.settings,
                    spark=self._spark,
                )
                if raw.empty:
                    raise ExplainError(
                        f"The training window of {self.model_uri} (dataset '{self.window.dataset}', "
                        f"where {self.window.where or 'no filter'}) has no rows now; pass background rows explicitly."
                    )
                self._background = self.prepare(raw).reset_index(drop=True)
        return self._background

    @property
    def attributor(self):
        if self._attributor is None:
            if self.method == "tree":
                needs = self.feature_perturbation == "interventional"
                self._attributor = shap_adapter.TreeAttributor(
                    self.pipeline,
                    self.features,
                    self.spec.task,
                    self.feature_perturbation,
                    self.background if needs else None,
                )
            else:
                codec = shap_adapter.Codec.fit(list(self.spec.numeric), list(self.spec.categorical), self.background)
                self._attributor = shap_adapter.PermutationAttributor(
                    self.predictor, codec, self.background, self.spec.task, seed=self.seed
                )
        return self._attributor

    def _choose_method(self, method: str) -> str:
        tree_ok, why = self._tree_possible()
        if method == "tree" and not tree_ok:
            raise ExplainError(
                f"method='tree' is not possible for {self.model_uri}: {why} Use method='auto' or 'permutation'."
            )
        if method == "auto":
            return "tree" if tree_ok else "permutation"
        return method

    def _tree_possible(self) -> tuple[bool, str]:
        from sklearn.pipeline import Pipeline

        if not isinstance(self.pipeline, Pipeline) or len(self.pipeline.steps) < 2:
            return False, "the model is not a scikit-learn Pipeline(preprocess, estimator)."
        if not shap_adapter.is_tree_model(self.pipeline[-1]):
            return False, f"its estimator ({type(self.pipeline[-1]).__name__}) is not a tree model."
        try:
            shap_adapter.feature_map(self.pipeline[:-1], self.features)
        except ExplainError as exc:
            return False, str(exc)
        return True, ""

    @property
    def output_kind(self) -> str:
        return "log-odds" if self.spec.task == "classification" else "prediction"

    def describe(self) -> dict[str, Any]:
        """What is explained and how: model, version, method, and the training window."""
        w = self.window
        return {
            "model": self.model_uri,
            "version": self.version,
            "task": self.spec.task,
            "method": self.method,
            "feature_perturbation": self.feature_perturbation
            if self.method == "tree"
            else "interventional (permutation)",
            "output": self.output_kind,
            "features": len(self.features),
            "feature_function": self.spec.feature_function,
            "training_dataset": w.dataset if w else "",
            "training_window": (w.where or "") if w else "",
            "background_rows": self.n_background,
            **({"note": w.note} if w and w.note else {}),
        }

    # -- model calls -------------------------------------------------------------------------------
    def prepare(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Raw rows -> the model's input (decorated, selected, coerced), keeping the row index."""
        missing = [c for c in self.spec.raw_columns if c not in raw.columns]
        if missing:
            raise ExplainError(
                f"The rows lack column(s) {', '.join(missing)} that model {self.model_uri} needs "
                f"(feature function '{self.spec.feature_function}'). Load them from the dataset too."
            )
        if raw.index.has_duplicates:
            raise ExplainError(
                "The rows' index has duplicate values; row ids must be unique (reset_index() gives 0..n-1)."
            )
        return self.spec.prepare(raw, self.decorator)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """P(positive) (classification) or the prediction (regression) for model input X."""
        return self.predictor(X)

    # -- explanations --------------------------------------------------------------------------------
    def explain(self, raw: pd.DataFrame) -> Explanation:
        """SHAP values for raw rows: one column per raw model feature, indexed like `raw`."""
        X = self.prepare(raw)
        values, base, prediction = self.attributor.attribute(X)
        index = X.index
        return Explanation(
            values=pd.DataFrame(values, index=index, columns=self.features),
            base_values=pd.Series(base, index=index, name="base_value"),
            prediction=pd.Series(prediction, index=index, name="prediction"),
            data=X,
            raw=raw,
            output_kind=self.output_kind,
            method=self._method_label(),
            model_uri=self.model_uri,
        )

    def _method_label(self) -> str:
        return f"tree ({self.feature_perturbation})" if self.method == "tree" else "permutation"

    def lime(self, explanation: Explanation, row_id, num_samples: int | None = None) -> tuple[pd.Series, float]:
        """LIME weights (by feature name) for one explained row, and LIME's local R^2."""
        explanation.row(row_id)
        row = explanation.data.loc[[row_id]]
        codec = shap_adapter.Codec.fit(
            list(self.spec.numeric), list(self.spec.categorical), self.background, explanation.data
        )
        return lime_weights(
            row,
            self.predictor,
            codec,
            self.background,
            self.spec.task,
            num_samples=num_samples or self.lime_samples,
            seed=self.seed,
        )

    def local(self, explanation: Explanation, row_id, top: int = 5, num_samples: int | None = None) -> LocalExplanation:
        """SHAP and LIME for the same row, side by side, with their agreement."""
        shap_values = explanation.row(row_id)
        lime, score = self.lime(explanation, row_id, num_samples)
        return LocalExplanation(
            row_id=row_id,
            prediction=float(explanation.prediction.loc[row_id]),
            output=float(explanation.output.loc[row_id]),
            base_value=float(explanation.base_values.loc[row_id]),
            shap=shap_values,
            lime=lime,
            lime_score=score,
            data=explanation.data.loc[row_id],
            agreement=agreement(shap_values, lime, top),
            output_kind=explanation.output_kind,
        )


# ---- loading ------------------------------------------------------------------------------------------------
def load_explainer(
    model_uri: str,
    settings: Settings | None = None,
    spark=None,
    *,
    n_background: int = 200,
    background: pd.DataFrame | None = None,
    method: str = "auto",
    feature_perturbation: str = "tree_path_dependent",
    lime_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> ModelExplainer:
    """Load `model_uri` (`models:/NAME@alias`, `models:/NAME/3`, `models:/m-...`) and get ready to explain it.

    background: raw rows to use instead of sampling `n_background` rows from the training window.
    method: 'auto' (Tree SHAP when the pipeline's estimator is a tree model, else permutation),
    'tree' or 'permutation'. feature_perturbation: for Tree SHAP, 'tree_path_dependent' or 'interventional'.
    """
    settings = settings or load_settings()
    pyfunc = model_contract.load_pyfunc(model_uri, settings, error=ExplainError)
    spec = ModelSpec.from_model(pyfunc)
    try:
        pipeline = pyfunc.get_raw_model()
    except Exception:  # not a flavor that exposes its raw model: explain through the pyfunc
        pipeline = None
    if pipeline is not None and not hasattr(pipeline, "predict"):
        pipeline = None
    name, version = _registered(model_uri, settings)
    window = training_window(model_uri, spec, settings, run_id=pyfunc.metadata.run_id)
    decorator = spec.decorator(settings, spark)
    explainer = ModelExplainer(
        model_uri,
        spec,
        decorator,
        pipeline,
        pyfunc,
        window=window,
        n_background=n_background,
        method=method,
        feature_perturbation=feature_perturbation,
        lime_samples=lime_samples,
        seed=seed,
        version=version,
        name=name,
        settings=settings,
        spark=spark,
    )
    if background is not None:
        explainer._background = explainer.prepare(background).reset_index(drop=True)
        explainer.n_background = len(explainer._background)
    return explainer


def default_model(dataset: str, alias: str = registry.CHALLENGER, settings: Settings | None = None) -> str:
    """`models:/NAME@alias` of the model trained on `dataset`: NAME is the model_name setting, else
    `<dataset>-<target name>` from the dataset's roles in the catalog ("" means the catalog's default_dataset)."""
    from ..task import default_model_name

    return registry.model_uri(default_model_name(dataset, settings, ExplainError), alias)


def _registered(model_uri: str, settings: Settings) -> tuple[str | None, int | None]:
    match = _MODEL_REF.match(model_uri)
    if not match or match.group("name").startswith("m-"):
        return None, None
    info = registry.get_version(match.group("name"), match.group("alias") or match.group("version"), settings)
    return info.name, info.version


def training_window(
    model_uri: str, spec: ModelSpec, settings: Settings | None = None, run_id: str | None = None
) -> TrainingWindow:
    """The dataset and filter that selected the model's training rows, from its training run.

    Uses the run's `train_where` and the `train_time_range` recorded in `model_contract.DATA_IDENTITY_ARTIFACT`
    (the time-ordered training part, without the holdout). Models without that lineage fall
    back to the whole dataset named in their spec, and say so in `note`.
    """
    settings = settings or load_settings()
    if run_id is None:
        run_id = model_contract.model_run_id(model_uri, settings)
    if not run_id:
        return TrainingWindow(
            dataset=spec.dataset,
            where=None,
            run_id=None,
            note="the model has no training run; background is drawn from the whole dataset",
        )
    params = model_contract.run_params(run_id, settings)
    dataset = params.get("dataset") or spec.dataset
    train_where = params.get("train_where", "")
    identity = model_contract.data_identity(run_id, settings)  # {} for an older run: the filter alone
    time_range = tuple(identity.get("train_time_range") or ())
    parts = [f"({train_where})"] if train_where else []
    if spec.time_column and len(time_range) == 2:
        lo, hi = (v.replace("'", "") for v in time_range)
        parts.append(f"`{spec.time_column}` >= '{lo}' AND `{spec.time_column}` <= '{hi}'")
    note = (
        ""
        if identity
        else f"the training run has no {model_contract.DATA_IDENTITY_ARTIFACT}; the window is train_where alone"
    )
    return TrainingWindow(
        dataset=dataset,
        where=" AND ".join(parts) or None,
        run_id=run_id,
        time_column=spec.time_column,
        time_range=time_range,
        train_where=train_where,
        note=note,
    )


def sample_rows(
    dataset: str,
    where: str | None = None,
    n: int = 200,
    seed: int = 0,
    columns: list[str] | None = None,
    purpose: str = "explain",
    settings: Settings | None = None,
    spark=None,
) -> pd.DataFrame:
    """`n` random raw rows of `dataset` (all of them if fewer), read through workbench.data, ids 0..n-1.

    The same arguments give the same rows in the same order (a seeded random order, top n: one pass
    over the data, each partition keeping only its n best)."""
    from pyspark.sql import functions as F

    from ..data import load

    settings = settings or load_settings()
    if n <= 0:
        raise ExplainError(f"Parameter 'n' must be a positive number of rows; found {n}.")
    df = load(dataset, columns=columns, where=where, purpose=purpose, settings=settings, spark=spark)
    key = "__explain_order"
    frame = df.withColumn(key, F.rand(seed)).orderBy(key).limit(n).drop(key).toPandas()
    return frame.reset_index(drop=True)


# ---- explanation drift --------------------------------------------------------------------------------------
def attribution_drift(
    model_uri: str,
    reference_pdf: pd.DataFrame,
    current_pdf: pd.DataFrame,
    settings: Settings | None = None,
    explainer: ModelExplainer | None = None,
) -> pd.DataFrame:
    """Explanation drift: mean |SHAP| per feature on a reference and a current frame of raw rows.

    Returns `compare_rankings(...)`: one row per feature, the features whose influence moved most
    first (`change` = current - reference, in output units; `share_change` = change of the share of
    total attribution, which ignores a uniform scale change). For Spark-scale windows, run
    `explain_spark` on each and compare `ranking_spark(...)` tables with `compare_rankings`.
    """
    explainer = explainer or load_explainer(model_uri, settings, n_background=0)
    if reference_pdf is None or not len(reference_pdf) or current_pdf is None or not len(current_pdf):
        raise ExplainError("attribution_drift needs rows in both the reference and the current frame.")
    return compare_rankings(explainer.explain(reference_pdf).ranking(), explainer.explain(current_pdf).ranking())
