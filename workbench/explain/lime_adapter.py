"""LIME adapter: the only module that imports `lime`.

LIME fits a weighted linear model to the model's answers on perturbed copies of one row. Its
perturbations are drawn from the training statistics of `background` (the sample of the model's
training window), with categorical features coded by `shap_adapter.Codec` and numeric features
discretised into quartiles (LIME's default). Missing numeric values are filled with the background
median for LIME only (the pipeline imputes them the same way before the model sees them).

The weights are in the model's probability units (P(positive) for a classifier), one per named
feature: LIME's "this feature's bin" effect, comparable in sign and rank with SHAP's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..errors import ExplainError, SetupError
from .shap_adapter import Codec

__all__ = ["lime_weights", "DEFAULT_SAMPLES"]

DEFAULT_SAMPLES = 3000


def lime_weights(
    row: pd.DataFrame,
    predict: Callable[[pd.DataFrame], np.ndarray],
    codec: Codec,
    background: pd.DataFrame,
    task: str,
    num_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> tuple[pd.Series, float]:
    """LIME weights for one model-input row: (weights by feature name, LIME's local fit R^2).

    `predict` maps a model-input frame to P(positive) (classification) or predictions (regression).
    The same row with the same seed always gives the same weights.
    """
    try:
        from lime.lime_tabular import LimeTabularExplainer
    except ImportError as exc:  # pragma: no cover - lime is a core dependency
        raise SetupError("LIME is not installed: `pip install 'lime>=0.2.0.1'`.") from exc
    if len(row) != 1:
        raise ExplainError(f"LIME explains one row at a time; got {len(row)} rows.")
    if background is None or not len(background):
        raise ExplainError("LIME needs background rows to sample around; pass n_background > 0.")

    codec.extend(row)
    training = codec.encode(background)
    instance = codec.encode(row)[0]
    n_numeric = len(codec.numeric)
    medians = np.nanmedian(training[:, :n_numeric], axis=0) if n_numeric else np.zeros(0)
    medians = np.where(np.isnan(medians), 0.0, medians)
    for j in range(n_numeric):
        training[np.isnan(training[:, j]), j] = medians[j]
        if np.isnan(instance[j]):
            instance[j] = medians[j]
    categorical_idx = list(range(n_numeric, len(codec.features)))
    names = {
        j: [("(missing)" if v is None else str(v)) for v in codec.categories[c]]
        for j, c in zip(categorical_idx, codec.categorical)
    }

    def classifier_fn(codes: np.ndarray) -> np.ndarray:
        scores = np.asarray(predict(codec.decode(codes)), dtype=np.float64)
        return np.column_stack([1 - scores, scores]) if task == "classification" else scores

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = LimeTabularExplainer(
            training,
            feature_names=codec.features,
            categorical_features=categorical_idx,
            categorical_names=names,
            mode="classification" if task == "classification" else "regression",
            discretize_continuous=True,
            random_state=seed,
        )
        explanation = explainer.explain_instance(
            instance, classifier_fn, labels=(1,), num_features=len(codec.features), num_samples=num_samples
        )
    weights = pd.Series(0.0, index=codec.features, dtype=np.float64)
    for j, w in explanation.as_map()[1]:
        weights.iloc[j] = float(w)
    return weights, float(explanation.score)
