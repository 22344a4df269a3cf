"""SHAP adapter: the only module that imports `shap`.

Two attributors, both picklable (Spark ships them to its Python workers) and both returning
attributions per *raw* model feature (the columns of `ModelSpec.features`), never per one-hot column:

- `TreeAttributor`: exact Tree SHAP on the pipeline's tree model (LightGBM, XGBoost, sklearn
  forests), fed the pipeline's own transformed inputs. The transformed columns are mapped back to
  the feature they came from (`feature_map`) and the one-hot columns of a categorical are summed,
  which keeps additivity: base value + sum of attributions = the model's raw output (the log-odds
  margin for a LightGBM classifier).
- `PermutationAttributor`: the model-agnostic fallback (any pipeline or pyfunc). It permutes the raw
  features themselves against a background sample, so it needs no mapping; categorical values are
  integer-coded for the masker (`Codec`) and decoded before the model sees them. Its output is the
  log-odds of P(positive) for a classifier, so both attributors explain the same scale.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ExplainError, SetupError

__all__ = [
    "Codec",
    "TreeAttributor",
    "PermutationAttributor",
    "feature_map",
    "is_tree_model",
    "beeswarm",
    "TREE_PERTURBATIONS",
]

TREE_PERTURBATIONS = ("tree_path_dependent", "interventional")
_EPS = 1e-12


# ---- mapping transformed columns back to raw features -------------------------------------------
def feature_map(preprocess, features: list[str]) -> np.ndarray:
    """Owner of each transformed column: `owner[j]` is the index in `features` that column j came from.

    Understands a ColumnTransformer whose transformers are one-to-one (imputers, scalers,
    'passthrough') or end in a OneHotEncoder (several columns per input). Anything else raises
    ExplainError, and the caller falls back to the model-agnostic explainer.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    while isinstance(preprocess, Pipeline) and len(preprocess.steps) == 1:  # pipeline[:-1] wraps the one step
        preprocess = preprocess.steps[0][1]
    if not isinstance(preprocess, ColumnTransformer):
        raise ExplainError(
            f"The pipeline's preprocessing is a {type(preprocess).__name__}, expected a ColumnTransformer; "
            "use method='permutation' for this model."
        )
    index = {f: i for i, f in enumerate(features)}
    names_in = list(getattr(preprocess, "feature_names_in_", features))
    owners: list[int] = []
    for _, transformer, columns in preprocess.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        columns = [columns] if isinstance(columns, (str, int)) else list(columns)
        columns = [names_in[c] if isinstance(c, (int, np.integer)) else c for c in columns]
        if not columns:
            continue
        unknown = [c for c in columns if c not in index]
        if unknown:
            raise ExplainError(
                f"The pipeline transforms column(s) {', '.join(unknown)} that are not among the model's features."
            )
        for column, count in zip(columns, _output_counts(transformer, columns)):
            owners.extend([index[column]] * count)
    produced = len(preprocess.get_feature_names_out())
    if len(owners) != produced:
        raise ExplainError(
            f"Could not map the pipeline's {produced} transformed columns back to its features "
            f"(mapped {len(owners)}); use method='permutation' for this model."
        )
    return np.asarray(owners, dtype=np.int64)


def _output_counts(transformer, columns: list[str]) -> list[int]:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    if isinstance(transformer, str):  # 'passthrough'
        return [1] * len(columns)
    last = transformer.steps[-1][1] if isinstance(transformer, Pipeline) else transformer
    if isinstance(last, OneHotEncoder):
        return _onehot_counts(last)
    if len(transformer.get_feature_names_out(columns)) == len(columns):
        return [1] * len(columns)
    raise ExplainError(
        f"The pipeline step {type(last).__name__} does not map columns one-to-one; "
        "use method='permutation' for this model."
    )


def _onehot_counts(encoder) -> list[int]:
    try:
        infrequent = encoder.infrequent_categories_
    except AttributeError:
        infrequent = [None] * len(encoder.categories_)
    drop = encoder.drop_idx_ if getattr(encoder, "drop_idx_", None) is not None else [None] * len(encoder.categories_)
    counts = []
    for cats, rare, dropped in zip(encoder.categories_, infrequent, drop):
        n = len(cats)
        if rare is not None and len(rare):
            n = n - len(rare) + 1
        if dropped is not None:
            n -= 1
        counts.append(n)
    return counts


def _collapse(values: np.ndarray, owners: np.ndarray, n_features: int) -> np.ndarray:
    """Sum the attributions of the transformed columns each raw feature owns."""
    out = np.zeros((values.shape[0], n_features), dtype=np.float64)
    for j in range(n_features):
        cols = np.flatnonzero(owners == j)
        if len(cols):
            out[:, j] = values[:, cols].sum(axis=1)
    return out


def is_tree_model(estimator) -> bool:
    """True when shap's TreeExplainer understands `estimator`."""
    shap = _shap()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shap.TreeExplainer(estimator)
        return True
    except Exception:  # shap raises InvalidModelError, TypeError or others for models it does not know
        return False


# ---- the tree attributor ------------------------------------------------------------------------
@dataclass
class TreeAttributor:
    """Tree SHAP through a fitted sklearn Pipeline(preprocess, tree model).

    `feature_perturbation`: 'tree_path_dependent' (default) conditions on the training rows the
    trees saw (node covers), needs no background and is the fastest exact mode; 'interventional'
    breaks feature dependence against `background` (transformed model inputs), at a cost linear in
    its size.
    """

    pipeline: Any
    features: list[str]
    task: str
    feature_perturbation: str = "tree_path_dependent"
    background: pd.DataFrame | None = None
    method: str = field(init=False, default="tree")
    _explainer: Any = field(init=False, default=None, repr=False)
    _owners: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        if self.feature_perturbation not in TREE_PERTURBATIONS:
            raise ExplainError(
                f"Parameter 'feature_perturbation' is '{self.feature_perturbation}'; expected one of {', '.join(TREE_PERTURBATIONS)}."
            )
        if self.feature_perturbation == "interventional" and (self.background is None or not len(self.background)):
            raise ExplainError("feature_perturbation='interventional' needs background rows; pass n_background > 0.")
        self._owners = feature_map(self.pipeline[:-1], self.features)

    @property
    def output_kind(self) -> str:
        return "log-odds" if self.task == "classification" else "prediction"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_explainer"] = None  # rebuilt lazily where it is used (e.g. once per Spark worker)
        return state

    def single_threaded(self) -> None:
        """Predict on one thread: where Spark already runs one worker per core, extra threads only contend."""
        estimator = self.pipeline[-1]
        params = estimator.get_params()
        for key in ("n_jobs", "num_threads", "nthread"):
            if key in params:
                estimator.set_params(**{key: 1})

    def _tree_explainer(self):
        if self._explainer is None:
            shap = _shap()
            estimator = self.pipeline[-1]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # LightGBM's "binary output format changed" notice
                if self.feature_perturbation == "interventional":
                    data = self._transform(self.background)
                    self._explainer = shap.TreeExplainer(
                        estimator,
                        data=data.to_numpy(dtype=np.float64),
                        feature_perturbation="interventional",
                        model_output="raw",
                    )
                else:
                    self._explainer = shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
        return self._explainer

    def _transform(self, X: pd.DataFrame) -> pd.DataFrame:
        Z = self.pipeline[:-1].transform(X)
        return Z if isinstance(Z, pd.DataFrame) else pd.DataFrame(Z)

    def attribute(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(attributions [rows x features], base values [rows], predictions [rows]) for model input X."""
        n = len(X)
        if n == 0:
            return np.zeros((0, len(self.features))), np.zeros(0), np.zeros(0)
        Z = self._transform(X)
        explainer = self._tree_explainer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = explainer.shap_values(Z.to_numpy(dtype=np.float64), check_additivity=False)
        expected = np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)
        if isinstance(values, list):  # older shap: one array per class
            values = values[-1]
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 3:  # (rows, columns, classes): explain the positive class
            values, expected = values[:, :, -1], expected[-1:]
        base = np.full(n, expected[-1])
        estimator = self.pipeline[-1]
        prediction = estimator.predict_proba(Z)[:, 1] if self.task == "classification" else estimator.predict(Z)
        return _collapse(values, self._owners, len(self.features)), base, np.asarray(prediction, dtype=np.float64)


# ---- the model-agnostic fallback ----------------------------------------------------------------
@dataclass
class Codec:
    """Model input <-> float matrix: numeric columns as they are, categorical as integer codes.

    SHAP maskers and LIME both need numbers; the model needs strings back. Code k of a categorical
    is `categories[column][k]` (None is a category of its own: a missing value)."""

    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list] = field(default_factory=dict)

    @classmethod
    def fit(cls, numeric: list[str], categorical: list[str], *frames: pd.DataFrame) -> Codec:
        categories = {}
        for c in categorical:
            seen = (
                pd.concat([f[c] for f in frames if f is not None and len(f)], ignore_index=True)
                if frames
                else pd.Series([], dtype=object)
            )
            values = sorted({v for v in seen if v is not None and not (isinstance(v, float) and np.isnan(v))}, key=str)
            categories[c] = [None, *values]
        return cls(list(numeric), list(categorical), categories)

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def extend(self, X: pd.DataFrame) -> None:
        """Add categories first seen in X (so any row can be coded)."""
        for c in self.categorical:
            known = set(self.categories[c])
            new = sorted(
                {v for v in X[c] if v is not None and not (isinstance(v, float) and np.isnan(v)) and v not in known},
                key=str,
            )
            self.categories[c].extend(new)

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(X), len(self.features)), dtype=np.float64)
        for j, c in enumerate(self.numeric):
            out[:, j] = pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        for k, c in enumerate(self.categorical):
            lookup = {v: i for i, v in enumerate(self.categories[c])}
            out[:, len(self.numeric) + k] = [
                lookup.get(None if v is None or (isinstance(v, float) and np.isnan(v)) else v, 0) for v in X[c]
            ]
        return out

    def decode(self, codes: np.ndarray) -> pd.DataFrame:
        codes = np.atleast_2d(codes)
        data: dict[str, Any] = {}
        for j, c in enumerate(self.numeric):
            data[c] = codes[:, j].astype(np.float64)
        for k, c in enumerate(self.categorical):
            cats = np.asarray(self.categories[c], dtype=object)
            idx = np.clip(np.rint(codes[:, len(self.numeric) + k]).astype(np.int64), 0, len(cats) - 1)
            data[c] = cats[idx]
        return pd.DataFrame(data, columns=self.features)


@dataclass
class PermutationAttributor:
    """Permutation SHAP on the raw features, through any prediction function of the model input.

    Cost per explained row: about `permutations * (2 * features + 1) * max_background` model rows,
    so it suits hundreds of rows, not millions (tree models take the TreeAttributor path).

    `predict` maps a model-input frame to P(positive) (classification) or predictions (regression).
    Classification is explained in log-odds (the logit of P), so it adds up like the tree path.
    """

    predict: Callable[[pd.DataFrame], np.ndarray]
    codec: Codec
    background: pd.DataFrame
    task: str
    permutations: int = 4  # antithetic permutations per row: exact additivity from 1, less noise with more
    max_background: int = 50  # background rows the masker averages over
    max_evals: int | None = None  # overrides permutations * (2 * features + 1)
    seed: int = 0
    method: str = field(init=False, default="permutation")
    feature_perturbation: str = field(init=False, default="interventional")

    def __post_init__(self):
        if self.background is None or not len(self.background):
            raise ExplainError("The permutation explainer needs background rows; pass n_background > 0.")

    @property
    def features(self) -> list[str]:
        return self.codec.features

    @property
    def output_kind(self) -> str:
        return "log-odds" if self.task == "classification" else "prediction"

    def _output(self, codes: np.ndarray) -> np.ndarray:
        scores = np.asarray(self.predict(self.codec.decode(codes)), dtype=np.float64)
        if self.task == "classification":
            p = np.clip(scores, _EPS, 1 - _EPS)
            return np.log(p / (1 - p))
        return scores

    def attribute(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        shap = _shap()
        n, m = len(X), len(self.features)
        if n == 0:
            return np.zeros((0, m)), np.zeros(0), np.zeros(0)
        self.codec.extend(X)
        background = self.codec.encode(self.background)
        masker = shap.maskers.Independent(background, max_samples=self.max_background)
        explainer = shap.PermutationExplainer(self._output, masker, seed=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = explainer(
                self.codec.encode(X), max_evals=self.max_evals or self.permutations * (2 * m + 1), silent=True
            )
        values = np.asarray(result.values, dtype=np.float64)
        base = np.asarray(result.base_values, dtype=np.float64).reshape(n)
        prediction = np.asarray(self.predict(X), dtype=np.float64)
        return values, base, prediction


# ---- plots drawn by shap ----------------------------------------------------------------------------
def beeswarm(
    values: np.ndarray, data: pd.DataFrame, base_values: np.ndarray, features: list[str], ax, max_display: int = 15
) -> None:
    """shap's beeswarm (summary) plot on a given matplotlib axis; categorical features are drawn grey."""
    shap = _shap()
    display = data[features].astype(object).where(data[features].notna(), None)
    explanation = shap.Explanation(
        values=values, base_values=base_values, data=display.to_numpy(dtype=object), feature_names=list(features)
    )
    state = np.random.get_state()
    np.random.seed(0)  # beeswarm jitters with the global RNG: keep plots reproducible
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shap.plots.beeswarm(explanation, max_display=max_display, ax=ax, show=False, plot_size=None)
    finally:
        np.random.set_state(state)


def _shap():
    try:
        import shap
    except ImportError as exc:  # pragma: no cover - shap is a core dependency
        raise SetupError("SHAP is not installed: `pip install 'shap>=0.48'`.") from exc
    return shap
