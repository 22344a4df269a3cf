"""Figures for explanations: matplotlib `Figure` objects built without pyplot's global state.

Jupyter shows a returned figure as an image (`ExplanationFigure._repr_png_`); `figure_png` gives the
bytes the explorer widget uses; MLflow logs the figures as they are. The beeswarm comes from shap (`shap_adapter.beeswarm`); the waterfall,
dependence and LIME charts are drawn here so local charts can sit side by side in one figure.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..errors import ExplainError
from . import shap_adapter
from .results import Explanation, LocalExplanation

__all__ = [
    "ExplanationFigure",
    "summary_plot",
    "ranking_plot",
    "dependence_plot",
    "dependence_plots",
    "waterfall_plot",
    "lime_plot",
    "local_figure",
    "figure_png",
]

POSITIVE, NEGATIVE = "#d62728", "#1f77b4"
MAX_CATEGORIES = 15


class ExplanationFigure(Figure):
    """A matplotlib Figure that Jupyter shows as an image by itself (no pyplot, no inline backend needed)."""

    def _repr_png_(self) -> bytes:
        return figure_png(self)


def _figure(**kwargs) -> Figure:
    """A new Figure outside pyplot's global state: nothing to close, safe in widget callbacks."""
    return ExplanationFigure(**kwargs)


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def summary_plot(e: Explanation, max_display: int = 15) -> Figure:
    """Beeswarm: one dot per row and feature, position = SHAP value, colour = feature value."""
    n = min(max_display, len(e.features))
    fig = _figure(figsize=(8, 0.4 * n + 1.5))
    ax = fig.subplots()
    shap_adapter.beeswarm(
        e.values.to_numpy(), e.data, e.base_values.to_numpy(), e.features, ax, max_display=max_display
    )
    ax.set_title(f"What drives the model: SHAP values of {len(e)} rows ({e.output_kind})", fontsize=10)
    fig.tight_layout()
    return fig


def ranking_plot(e: Explanation | pd.DataFrame, max_display: int = 15) -> Figure:
    """Bar chart of mean |SHAP| per feature (a `ranking()` table or an Explanation)."""
    table = e.ranking() if isinstance(e, Explanation) else e
    top = table.head(max_display).iloc[::-1]
    fig = _figure(figsize=(7, 0.35 * len(top) + 1.2))
    ax = fig.subplots()
    ax.barh(top["feature"], top["mean_abs_shap"], color=POSITIVE)
    ax.set_xlabel("mean |SHAP value|")
    ax.set_title("Global feature importance", fontsize=10)
    fig.tight_layout()
    return fig


def dependence_plot(e: Explanation, feature: str, ax=None) -> Figure:
    """SHAP value of `feature` against its value: a scatter for numbers, a strip per category (median marked) for strings."""
    if feature not in e.features:
        raise ExplainError(f"Feature '{feature}' is not among the model's features ({', '.join(e.features)}).")
    fig = None
    if ax is None:
        fig = _figure(figsize=(5.5, 4))
        ax = fig.subplots()
    x, y = e.data[feature], e.values[feature]
    if pd.api.types.is_numeric_dtype(x):
        ax.scatter(x, y, s=8, alpha=0.5, color=NEGATIVE)
        missing = x.isna()
        if missing.any():
            ax.scatter(
                np.full(int(missing.sum()), np.nanmin(x.to_numpy()) if (~missing).any() else 0.0),
                y[missing],
                s=8,
                alpha=0.5,
                color="grey",
                label="missing",
            )
            ax.legend(fontsize=8)
    else:
        labels = x.fillna("(missing)").astype(str)
        order = labels.value_counts().index[:MAX_CATEGORIES]
        jitter = np.random.default_rng(0)
        for i, category in enumerate(order):
            values = y[labels == category].to_numpy()
            ax.scatter(values, i + jitter.uniform(-0.25, 0.25, len(values)), s=8, alpha=0.5, color=NEGATIVE)
            ax.plot([np.median(values)] * 2, [i - 0.35, i + 0.35], color="black", lw=1.2)
        ax.set_yticks(range(len(order)), list(order), fontsize=8)
        ax.invert_yaxis()
    ax.axhline(0, color="grey", lw=0.6) if pd.api.types.is_numeric_dtype(x) else ax.axvline(0, color="grey", lw=0.6)
    if pd.api.types.is_numeric_dtype(x):
        ax.set_xlabel(feature)
        ax.set_ylabel(f"SHAP value ({e.output_kind})")
    else:
        ax.set_xlabel(f"SHAP value ({e.output_kind})")
        ax.set_ylabel(feature)
    ax.set_title(f"Dependence: {feature}", fontsize=10)
    if fig is not None:
        fig.tight_layout()
        return fig
    return ax.figure


def dependence_plots(e: Explanation, features: Sequence[str] | None = None, top: int = 3) -> Figure:
    """Dependence plots side by side, by default for the `top` features of the global ranking."""
    features = list(features) if features else list(e.ranking()["feature"].head(top))
    fig = _figure(figsize=(5 * len(features), 4))
    axes = np.atleast_1d(fig.subplots(1, len(features)))
    for ax, feature in zip(axes, features):
        dependence_plot(e, feature, ax=ax)
    fig.tight_layout()
    return fig


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def waterfall_plot(local: LocalExplanation, max_display: int = 10, ax=None) -> Figure:
    """SHAP waterfall for one row: from the base value, each feature pushes the output up or down."""
    fig = None
    if ax is None:
        fig = _figure(figsize=(7, 0.4 * max_display + 1.5))
        ax = fig.subplots()
    order = list(local.shap.abs().sort_values(ascending=False, kind="mergesort").index)
    shown = order if len(order) <= max_display else order[: max_display - 1]
    items = [(f"{f} = {_fmt(local.data[f])}", float(local.shap[f])) for f in shown]
    if len(order) > len(shown):
        items.append((f"{len(order) - len(shown)} other features", float(local.shap[order[len(shown) :]].sum())))
    items = items[::-1]  # bottom row first: the smallest, then up to the largest
    start = local.base_value
    edges = [start]
    for y, (label, value) in enumerate(items):
        ax.barh(y, value, left=start, color=POSITIVE if value >= 0 else NEGATIVE, height=0.6)
        ax.text(start + value, y, f" {value:+.3f} ", va="center", ha="left" if value >= 0 else "right", fontsize=8)
        start += value
        edges.append(start)
    low, high = min(edges), max(edges)
    pad = 0.25 * (high - low or 1.0)
    ax.set_xlim(low - pad, high + pad)
    ax.set_yticks(range(len(items)), [label for label, _ in items], fontsize=8)
    ax.axvline(local.base_value, color="grey", lw=0.6, ls="--")
    ax.axvline(local.output, color="black", lw=0.8)
    ax.set_xlabel(f"{local.output_kind}: base {local.base_value:.3f} -> output {local.output:.3f}")
    ax.set_title(f"SHAP, row {local.row_id}: prediction {local.prediction:.3f}", fontsize=10)
    if fig is not None:
        fig.tight_layout()
        return fig
    return ax.figure


def lime_plot(local: LocalExplanation, max_display: int = 10, ax=None) -> Figure:
    """LIME weights for one row (probability units), largest |weight| first."""
    fig = None
    if ax is None:
        fig = _figure(figsize=(6, 0.4 * max_display + 1.5))
        ax = fig.subplots()
    order = list(local.lime.abs().sort_values(ascending=False, kind="mergesort").index[:max_display])[::-1]
    weights = local.lime[order]
    ax.barh(
        range(len(order)), weights.to_numpy(), color=[POSITIVE if w >= 0 else NEGATIVE for w in weights], height=0.6
    )
    ax.set_yticks(range(len(order)), [f"{f} = {_fmt(local.data[f])}" for f in order], fontsize=8)
    ax.axvline(0, color="grey", lw=0.6)
    ax.set_xlabel("LIME weight (probability)" if local.output_kind == "log-odds" else "LIME weight")
    ax.set_title(f"LIME, row {local.row_id} (local fit R² {local.lime_score:.2f})", fontsize=10)
    if fig is not None:
        fig.tight_layout()
        return fig
    return ax.figure


def local_figure(locals_: LocalExplanation | Sequence[LocalExplanation], max_display: int = 10) -> Figure:
    """SHAP waterfall and LIME weights side by side, one line per row, the agreement in each line's title."""
    items = [locals_] if isinstance(locals_, LocalExplanation) else list(locals_)
    if not items:
        raise ExplainError("local_figure needs at least one local explanation (row_ids is empty?).")
    height = 0.4 * max_display + 2.0
    fig = _figure(figsize=(14, height * len(items)), layout="constrained")
    grid = fig.subfigures(len(items), 1, squeeze=False)[:, 0]
    for sub, local in zip(grid, items):
        left, right = sub.subplots(1, 2)
        waterfall_plot(local, max_display, ax=left)
        lime_plot(local, max_display, ax=right)
        sub.suptitle(local.agreement.statement(), fontsize=10)
    return fig
