"""The interactive explorer: pick a row, see its prediction, SHAP waterfall and LIME weights.

    explorer = explore(explainer, explanation)      # filters: the dataset's slices, from the catalog
    explorer            # the last expression of a notebook cell shows the widget

Filters default to the `slices` role of the model's dataset in the catalog, else to the text columns
of the rows with 2 to 20 distinct values. Filters the rows lack are dropped and named in
`explorer.dropped` and in a note above the controls.

Controls: one dropdown per filter column (narrows the rows), a row dropdown (by row id), and a
dependence-plot feature dropdown. Every control is an ipywidgets widget with an observer, so a test
(or a script) drives it by setting `explorer.row.value = 7` and reads `explorer.current`,
`explorer.summary.value` and the PNG bytes of `explorer.waterfall` / `explorer.lime` / `explorer.dependence_plot`.
Local explanations are computed on demand (LIME takes a moment) and cached per row.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .core import ModelExplainer
from .plots import dependence_plot, figure_png, lime_plot, waterfall_plot
from .results import Explanation, LocalExplanation

__all__ = ["ExplanationExplorer", "explore", "ANY"]

ANY = "(any)"


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class ExplanationExplorer:
    """ipywidgets explorer over the rows of one Explanation (see the module docstring)."""

    def __init__(
        self,
        explainer: ModelExplainer,
        explanation: Explanation,
        filters: Sequence[str] | None = None,
        top: int = 5,
        max_display: int = 10,
        dependence: str | None = None,
    ):
        import ipywidgets as W

        self.explainer, self.explanation = explainer, explanation
        self.top, self.max_display = top, max_display
        self.current: LocalExplanation | None = None
        self._cache: dict[Any, LocalExplanation] = {}
        self._busy = False

        raw = explanation.raw
        if not filters:
            filters = default_filters(explainer, raw)
        self.dropped = [c for c in filters if c not in raw.columns]
        self.filters: dict[str, Any] = {}
        for column in filters:
            if column not in raw.columns:
                continue
            values = sorted({_scalar(v) for v in raw[column].dropna().unique()}, key=lambda v: (str(type(v)), v))
            dropdown = W.Dropdown(options=[(ANY, ANY)] + [(str(v), v) for v in values], value=ANY, description=column)
            dropdown.observe(self._on_filter, names="value")
            self.filters[column] = dropdown

        ids = explanation.ids
        self.row = W.Dropdown(options=self._options(ids), value=ids[0] if ids else None, description="row")
        self.row.observe(self._on_row, names="value")
        ranked = list(explanation.ranking()["feature"])
        self.dependence = W.Dropdown(
            options=ranked, value=dependence if dependence in ranked else ranked[0], description="dependence"
        )
        self.dependence.observe(self._on_dependence, names="value")

        self.summary = W.HTML()
        self.waterfall = W.Image(format="png")
        self.lime = W.Image(format="png")
        self.dependence_plot = W.Image(format="png")
        self.note = W.HTML(
            f"Filter(s) {html.escape(', '.join(self.dropped))} dropped: not columns of the explained rows."
            if self.dropped
            else ""
        )
        self.widget = W.VBox(
            [
                self.note,
                W.HBox([*self.filters.values(), self.row]),
                self.summary,
                W.HBox([self.waterfall, self.lime]),
                self.dependence,
                self.dependence_plot,
            ]
        )
        self._show_row(self.row.value)
        self._show_dependence(self.dependence.value)

    # -- display ------------------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- selection ----------------------------------------------------------------------------------
    def matching_ids(self) -> list:
        """Row ids that pass the filter dropdowns."""
        mask = pd.Series(True, index=self.explanation.raw.index)
        for column, dropdown in self.filters.items():
            if dropdown.value != ANY:
                mask &= self.explanation.raw[column].map(_scalar) == dropdown.value
        return [i for i in self.explanation.ids if mask.get(i, False)]

    def _options(self, ids: list) -> list[tuple[str, Any]]:
        raw, prediction = self.explanation.raw, self.explanation.prediction
        labels = []
        for i in ids:
            parts = [f"{c}={_scalar(raw.at[i, c])}" for c in self.filters]
            labels.append((" · ".join([str(i), *parts, f"p={prediction.at[i]:.3f}"]), i))
        return labels

    def _on_filter(self, change) -> None:
        ids = self.matching_ids()
        keep = self.row.value if self.row.value in ids else (ids[0] if ids else None)
        self._busy = True
        try:
            self.row.options = self._options(ids)
            self.row.value = keep
        finally:
            self._busy = False
        self._show_row(keep)

    def _on_row(self, change) -> None:
        if not self._busy:
            self._show_row(change["new"])

    def _on_dependence(self, change) -> None:
        self._show_dependence(change["new"])

    # -- rendering ----------------------------------------------------------------------------------
    def local(self, row_id) -> LocalExplanation:
        if row_id not in self._cache:
            self._cache[row_id] = self.explainer.local(self.explanation, row_id, top=self.top)
        return self._cache[row_id]

    def _show_row(self, row_id) -> None:
        if row_id is None:
            self.current = None
            self.summary.value = "<b>No rows match the filters.</b>"
            self.waterfall.value = self.lime.value = b""
            return
        local = self.local(row_id)
        self.current = local
        self.summary.value = self._summary_html(local)
        self.waterfall.value = figure_png(waterfall_plot(local, self.max_display))
        self.lime.value = figure_png(lime_plot(local, self.max_display))

    def _show_dependence(self, feature: str) -> None:
        self.dependence_plot.value = figure_png(dependence_plot(self.explanation, feature))

    def _summary_html(self, local: LocalExplanation) -> str:
        label = "P(positive)" if local.output_kind == "log-odds" else "prediction"
        raw = self.explanation.raw.loc[local.row_id]
        shown = ", ".join(f"{html.escape(str(c))}={html.escape(str(_scalar(raw[c])))}" for c in self.filters)
        return (
            f"<b>Row {html.escape(str(local.row_id))}</b>{' (' + shown + ')' if shown else ''}: "
            f"{label} <b>{local.prediction:.3f}</b> "
            f"({local.output_kind} {local.output:+.3f}, base {local.base_value:+.3f}).<br>"
            f"{html.escape(local.agreement.statement())}"
        )


def default_filters(explainer: ModelExplainer, raw: pd.DataFrame) -> list[str]:
    """The declared `slices` of the model's dataset, else the rows' text columns with few distinct values."""
    from ..data.roles import low_cardinality
    from ..errors import WorkbenchError
    from ..task import dataset_entry

    dataset = getattr(explainer.spec, "dataset", "")
    try:
        declared = dataset_entry(dataset, explainer.settings).roles.slices if dataset else None
    except WorkbenchError:  # the dataset left the catalog: fall back to the rows
        declared = None
    return list(declared) if declared is not None else low_cardinality(raw, raw.columns)


def explore(
    explainer: ModelExplainer,
    explanation: Explanation,
    filters: Sequence[str] | None = None,
    top: int = 5,
    max_display: int = 10,
    dependence: str | None = None,
) -> ExplanationExplorer:
    """The explorer widget over `explanation`'s rows (filters: raw columns to pick rows by; default above)."""
    return ExplanationExplorer(
        explainer, explanation, filters=filters, top=top, max_display=max_display, dependence=dependence
    )
