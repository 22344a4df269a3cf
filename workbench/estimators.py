"""The estimators a model can be trained with, by name (`ESTIMATORS`), and the scikit-learn Pipeline around
them: `build_pipeline` (the preprocessing every model shares) and `feature_importance` (what the fitted
estimator says about its inputs). Pure scikit-learn and LightGBM: no MLflow, no Spark, so a pipeline can be
built and fitted anywhere (tests, a notebook) without the tracking stack; `workbench.training` fits and logs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .errors import TrainingError

__all__ = ["ESTIMATORS", "build_pipeline", "feature_importance"]


# ---- estimators, by name (plug-ins by registry) -------------------------------------------------------
# LightGBM's settings unless `params` says otherwise (the same for both tasks)
LGBM_DEFAULTS = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "n_jobs": 2,
    "random_state": 42,
    "verbose": -1,
}


def _lgbm_classifier(params: dict) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(**{**LGBM_DEFAULTS, **params})


def _lgbm_regressor(params: dict) -> Any:
    from lightgbm import LGBMRegressor

    return LGBMRegressor(**{**LGBM_DEFAULTS, **params})


def _logistic(params: dict) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(**{"max_iter": 1000, "C": 1.0, **params})


def _ridge(params: dict) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge(**{"alpha": 1.0, **params})


# name -> {task: factory}
ESTIMATORS: dict[str, dict[str, Callable[[dict], Any]]] = {
    "lightgbm": {"classification": _lgbm_classifier, "regression": _lgbm_regressor},
    "logistic": {"classification": _logistic},
    "linear": {"regression": _ridge},
}


# ---- the pipeline ----------------------------------------------------------------------------------------
def build_pipeline(numeric: list[str], categorical: list[str], estimator: Any):
    """ColumnTransformer(numeric: median impute + scale; categorical: impute + one-hot) -> estimator.

    Categories rarer than 1% of training rows, and categories never seen in training, share one
    'infrequent' column, so serving never fails on a category it has not seen.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    transformers = []
    if numeric:
        transformers.append(
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                list(numeric),
            )
        )
    if categorical:
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
                        (
                            "onehot",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist", min_frequency=0.01, sparse_output=False
                            ),
                        ),
                    ]
                ),
                list(categorical),
            )
        )
    if not transformers:
        raise TrainingError("No features to train on: pass at least one column in `features`.")
    preprocess = ColumnTransformer(transformers, verbose_feature_names_out=False, sparse_threshold=0.0)
    preprocess.set_output(transform="pandas")
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


# ---- what a fitted pipeline says -------------------------------------------------------------------------
def feature_importance(pipeline) -> pd.DataFrame:
    """Importance per input column the estimator sees: LightGBM gain, or |coefficient| on scaled inputs."""
    names = list(pipeline[:-1].get_feature_names_out())
    est = pipeline.named_steps["model"]
    if hasattr(est, "booster_"):
        values, kind = est.booster_.feature_importance(importance_type="gain"), "gain"
    elif hasattr(est, "coef_"):
        values, kind = np.abs(np.atleast_2d(est.coef_)[0]), "abs_coefficient"
    else:
        return pd.DataFrame(columns=["feature", "importance", "kind"])
    return (
        pd.DataFrame({"feature": names, "importance": values, "kind": kind})
        .sort_values("importance", ascending=False)
        .reset_index(drop=True)
    )
