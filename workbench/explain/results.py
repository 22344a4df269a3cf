"""The result types of explanations, and the pure computations over them (no model, no MLflow, no plots).

`Explanation` (SHAP values per raw feature and row), `LocalExplanation` (one row: SHAP and LIME side
by side), `Agreement` (how far the two agree), `TrainingWindow` (where a model's training rows came
from); `ranking_of`, `agreement`, `agreement_table` and `compare_rankings` compute over them.
`core` builds these from a model, `plots` and `widgets` draw them, `summary` logs them to MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ExplainError

__all__ = [
    "Explanation",
    "LocalExplanation",
    "Agreement",
    "TrainingWindow",
    "agreement",
    "agreement_table",
    "ranking_of",
    "compare_rankings",
]


# ---- results -------------------------------------------------------------------------------------------
@dataclass
class Explanation:
    """SHAP attributions for a set of rows, one column per raw model feature.

    `values.loc[row_id, feature]`: the feature's contribution to the row's output in `output_kind`
    units (log-odds for a classifier); `base_values + values.sum(axis=1)` is the model's raw output.
    Row ids are the index of the raw frame that was explained.
    """

    values: pd.DataFrame
    base_values: pd.Series
    prediction: pd.Series  # P(positive) for a classifier, the prediction for a regressor
    data: pd.DataFrame  # the model input (decorated feature values) of each row
    raw: pd.DataFrame  # the rows as given
    output_kind: str
    method: str
    model_uri: str

    @property
    def features(self) -> list[str]:
        return list(self.values.columns)

    @property
    def ids(self) -> list:
        return list(self.values.index)

    @property
    def output(self) -> pd.Series:
        """The model's raw output per row (base value + attributions)."""
        return self.base_values + self.values.sum(axis=1)

    def __len__(self) -> int:
        return len(self.values)

    def ranking(self) -> pd.DataFrame:
        """Global importance: mean |SHAP| per feature, largest first, with its share of the total."""
        return ranking_of(self.values)

    def row(self, row_id) -> pd.Series:
        if row_id not in self.values.index:
            raise ExplainError(
                f"Row id {row_id!r} is not among the {len(self)} explained rows; pick one of the frame's index values."
            )
        return self.values.loc[row_id]


@dataclass(frozen=True)
class Agreement:
    """How far SHAP and LIME tell the same story for one row, over the top features by |SHAP|."""

    top: int
    sign_agreement: float  # share of the top features where both give the same direction
    top_overlap: float  # share of SHAP's top features that are also among LIME's top
    rank_correlation: float  # Spearman correlation of the two attributions over both top sets

    def statement(self) -> str:
        n_same = int(round(self.sign_agreement * self.top))
        corr = "n/a" if np.isnan(self.rank_correlation) else f"{self.rank_correlation:+.2f}"
        verdict = (
            "agree"
            if self.sign_agreement >= 0.8 and self.top_overlap >= 0.6
            else "partly agree"
            if self.sign_agreement >= 0.5
            else "disagree"
        )
        return (
            f"SHAP and LIME {verdict}: same direction for {n_same} of the top {self.top} features, "
            f"{int(round(self.top_overlap * self.top))} of the top {self.top} shared, "
            f"rank correlation {corr} (Spearman)."
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "top": self.top,
            "sign_agreement": self.sign_agreement,
            "top_overlap": self.top_overlap,
            "rank_correlation": self.rank_correlation,
        }


@dataclass
class LocalExplanation:
    """One row: its prediction, SHAP values (output units) and LIME weights (probability units)."""

    row_id: Any
    prediction: float
    output: float
    base_value: float
    shap: pd.Series
    lime: pd.Series
    lime_score: float
    data: pd.Series
    agreement: Agreement
    output_kind: str

    def table(self) -> pd.DataFrame:
        """Feature, value, SHAP and LIME side by side, largest |SHAP| first."""
        order = self.shap.abs().sort_values(ascending=False).index
        return pd.DataFrame(
            {"value": self.data[order].astype(object), "shap": self.shap[order], "lime": self.lime[order]}
        ).rename_axis("feature")


@dataclass(frozen=True)
class TrainingWindow:
    """Where a model's training rows came from, read from its training run."""

    dataset: str
    where: str | None  # a Spark SQL predicate selecting the training part
    run_id: str | None
    time_column: str = ""
    time_range: tuple[str, ...] = ()
    train_where: str = ""
    note: str = ""


def agreement(shap_values: pd.Series, lime: pd.Series, top: int = 5) -> Agreement:
    """Sign agreement and overlap over SHAP's top features, and the Spearman correlation over both tops."""
    from scipy.stats import spearmanr

    top = max(1, min(top, len(shap_values)))
    shap_top = list(shap_values.abs().sort_values(ascending=False, kind="mergesort").index[:top])
    lime_top = list(lime.abs().sort_values(ascending=False, kind="mergesort").index[:top])
    same = [np.sign(shap_values[f]) == np.sign(lime[f]) for f in shap_top]
    union = list(dict.fromkeys([*shap_top, *lime_top]))
    corr = float("nan")
    if len(union) >= 3 and shap_values[union].nunique() > 1 and lime[union].nunique() > 1:
        corr = float(spearmanr(shap_values[union].to_numpy(), lime[union].to_numpy()).statistic)
    return Agreement(
        top=top,
        sign_agreement=float(np.mean(same)),
        top_overlap=len(set(shap_top) & set(lime_top)) / top,
        rank_correlation=corr,
    )


def agreement_table(locals_: list[LocalExplanation]) -> pd.DataFrame:
    """One line per locally explained row: prediction, SHAP/LIME agreement figures and the statement."""
    return pd.DataFrame(
        [
            {
                "row_id": l.row_id,
                "prediction": l.prediction,
                **l.agreement.as_dict(),
                "lime_fit_r2": l.lime_score,
                "statement": l.agreement.statement(),
            }
            for l in locals_
        ]
    )


def ranking_of(values: pd.DataFrame) -> pd.DataFrame:
    mean_abs = values.abs().mean(axis=0)
    total = float(mean_abs.sum())
    table = pd.DataFrame(
        {
            "feature": mean_abs.index,
            "mean_abs_shap": mean_abs.to_numpy(),
            "share": mean_abs.to_numpy() / total if total > 0 else 0.0,
        }
    )
    table = table.sort_values("mean_abs_shap", ascending=False, kind="mergesort").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def compare_rankings(reference: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Two `ranking()` tables -> per feature: mean |SHAP| before/after, change, share change, ranks.

    Sorted by the absolute change of mean |SHAP|: the first rows are the features whose influence moved most."""
    ref = reference.set_index("feature")
    cur = current.set_index("feature")
    features = list(dict.fromkeys([*ref.index, *cur.index]))
    ref, cur = ref.reindex(features), cur.reindex(features)
    out = pd.DataFrame(
        {
            "feature": features,
            "reference": ref["mean_abs_shap"].fillna(0.0).to_numpy(),
            "current": cur["mean_abs_shap"].fillna(0.0).to_numpy(),
            "reference_share": ref["share"].fillna(0.0).to_numpy(),
            "current_share": cur["share"].fillna(0.0).to_numpy(),
            "reference_rank": ref["rank"].to_numpy(),
            "current_rank": cur["rank"].to_numpy(),
        }
    )
    out["change"] = out["current"] - out["reference"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["relative_change"] = np.where(out["reference"] > 0, out["change"] / out["reference"], np.nan)
    out["share_change"] = out["current_share"] - out["reference_share"]
    order = out["change"].abs().sort_values(ascending=False, kind="mergesort").index
    return out.loc[
        order,
        [
            "feature",
            "reference",
            "current",
            "change",
            "relative_change",
            "reference_share",
            "current_share",
            "share_change",
            "reference_rank",
            "current_rank",
        ],
    ].reset_index(drop=True)
