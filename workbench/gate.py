"""The evaluation gate: does the challenger ship?

Both models are scored on the same held-out window (rows read through `workbench.data.load`, each
model fed through its own recorded feature function). The gate passes when the challenger

1. beats a fixed floor on the gate metric (e.g. AUC >= 0.60), and
2. is not worse than the champion by more than `tolerance` overall, and
3. is not worse than the champion by more than `tolerance` on any slice (each value of each slice
   column) holding at least `min_rows` rows (smaller slices are listed, not judged). Slice columns
   default to the dataset's declared `slices` role in the catalog, else its categorical features with
   2 to 20 distinct values in the evaluation window.

With no champion, the floor alone decides. Calibration and the latency of `predict` on a batch are
reported beside the decision, not gated.

    result = evaluate(dataset="flights", eval_where="month = 3", promote=True)   # name and slices from the catalog
    result.decision      # "SHIP" | "DO NOT SHIP"
    result.reasons       # why, one line each, naming the slice that failed
    result.to_html()     # the report: the decision and reasons at the top

`compare(...)` is the pure decision over scores already computed (tested without MLflow).
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import model_contract, registry
from .config import Settings, load_settings
from .data.roles import low_cardinality
from .errors import GateError, RegistryError
from .features import model_frame
from .model_contract import ModelSpec, compute_metrics

__all__ = ["GateResult", "evaluate", "compare", "calibration_figure", "HIGHER_IS_BETTER", "SHIP", "DO_NOT_SHIP"]

SHIP, DO_NOT_SHIP = "SHIP", "DO NOT SHIP"
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "average_precision": True,
    "f1": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "r2": True,
    "log_loss": False,
    "brier": False,
    "rmse": False,
    "mae": False,
}
DEFAULT_METRIC = {"classification": "roc_auc", "regression": "rmse"}
# The floor when none is given: a chance-level AUC is 0.5 whatever the data; an error metric (rmse, mae)
# is in the target's units, so no floor fits every dataset: without one, the champion alone is the bar.
DEFAULT_FLOOR = {"roc_auc": 0.6}


class _HtmlView(str):
    """HTML that notebooks display as HTML."""

    def _repr_html_(self) -> str:
        return str(self)


@dataclass
class GateResult:
    decision: str
    reasons: list[str]
    metric: str
    tolerance: float
    floor: float | None
    overall: pd.DataFrame  # one row per model: metrics on the whole window
    slices: pd.DataFrame  # one row per slice value: rows, metric per model, delta, verdict
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    latency_ms: dict[str, float] = field(default_factory=dict)
    name: str = ""
    challenger_version: int | None = None
    champion_version: int | None = None
    window: str = ""
    promoted: bool = False
    description: str = ""  # what the model predicts, from the catalog's roles

    @property
    def passed(self) -> bool:
        return self.decision == SHIP

    @property
    def failed_slices(self) -> list[str]:
        if self.slices.empty:
            return []
        bad = self.slices[self.slices["verdict"] == "worse"]
        return [f"{r.slice}={r.value}" for r in bad.itertuples()]

    def summary(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reasons": self.reasons,
            "metric": self.metric,
            "name": self.name,
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "window": self.window,
            "promoted": self.promoted,
            "failed_slices": self.failed_slices,
            "latency_ms": self.latency_ms,
        }

    @property
    def decision_view(self) -> _HtmlView:
        """The decision, its reasons and the overall scores only: for a notebook that shows slices,
        calibration and latency in sections of their own (so the report shows each once)."""
        return _HtmlView(self.to_html(details=False))

    def to_html(self, details: bool = True) -> str:
        """The report: decision and reasons first, then overall, and with `details` slices, calibration and latency."""
        color = "#1a7f37" if self.passed else "#cf222e"
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons)
        predicts = f" (predicts: {html.escape(self.description)})" if self.description else ""
        who = f"{html.escape(self.name)}{predicts}: challenger v{self.challenger_version} vs " + (
            f"champion v{self.champion_version}" if self.champion_version else "no champion (floor only)"
        )
        parts = [
            f'<div class="gate-decision" style="border-left:6px solid {color};padding:8px 14px;margin:8px 0">'
            f'<h2 style="color:{color};margin:0">{self.decision}</h2><p>{who}; window: <code>{html.escape(self.window or "-")}</code>; '
            f"gate metric <b>{self.metric}</b>, tolerance {self.tolerance:g}, "
            f"{'floor ' + format(self.floor, 'g') if self.floor is not None else 'no floor'}"
            f"{'; promoted to champion' if self.promoted else ''}</p><ul>{reasons}</ul></div>",
            "<h3>Overall</h3>",
            self.overall.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0),
        ]
        if not details:
            return "\n".join(parts)
        if not self.slices.empty:
            parts += ["<h3>Slices</h3>", self.slices.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0)]
        if not self.calibration.empty:
            parts += ["<h3>Calibration</h3>", _calibration_png(self.calibration)]
        if self.latency_ms:
            parts += [
                "<h3>Latency of predict on a batch</h3>",
                pd.DataFrame([{"model": k, "ms per batch": v} for k, v in self.latency_ms.items()]).to_html(
                    index=False, border=0
                ),
            ]
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()


# ---- the decision ------------------------------------------------------------------------------------
def compare(
    label: Sequence,
    challenger: np.ndarray,
    champion: np.ndarray | None,
    frame: pd.DataFrame | None = None,
    task: str = "classification",
    slices: Sequence[str] = (),
    metric: str | None = None,
    tolerance: float = 0.01,
    floor: float | None = None,
    min_rows: int = 200,
    decision_threshold: float = 0.5,
) -> GateResult:
    """Decide SHIP / DO NOT SHIP from scores on the same rows (`frame` holds the slice columns).

    floor: None means DEFAULT_FLOOR of the metric (0.6 for roc_auc), and no floor for error metrics."""
    metric = metric or DEFAULT_METRIC[task]
    floor = DEFAULT_FLOOR.get(metric) if floor is None else floor
    if metric not in HIGHER_IS_BETTER:
        raise GateError(f"Gate metric '{metric}' is unknown; choose one of {', '.join(HIGHER_IS_BETTER)}.")
    up = HIGHER_IS_BETTER[metric]
    y = np.asarray(label)
    if len(y) == 0:
        raise GateError("The evaluation window has no rows with a target; choose another eval_where.")

    def score(values, mask=None):
        m = compute_metrics(
            y if mask is None else y[mask], values if mask is None else values[mask], task, decision_threshold
        )
        return m.get(metric)

    def worse(new, old) -> bool:
        return (new < old - tolerance) if up else (new > old + tolerance)

    overall = [{"model": "challenger", **compute_metrics(y, challenger, task, decision_threshold)}]
    if champion is not None:
        overall.append({"model": "champion", **compute_metrics(y, champion, task, decision_threshold)})
    overall_df = pd.DataFrame(overall)
    reasons: list[str] = []
    ok = True
    new_overall = overall[0].get(metric)
    if new_overall is None:
        raise GateError(
            f"Gate metric '{metric}' cannot be computed on this window (e.g. AUC needs both classes); widen eval_where."
        )
    cmp = ">=" if up else "<="
    if floor is None:
        reasons.append(f"no floor for {metric} (pass floor to set one)")
    elif (new_overall >= floor) if up else (new_overall <= floor):
        reasons.append(f"challenger {metric} {new_overall:.4f} {cmp} floor {floor:g}")
    else:
        ok = False
        reasons.append(f"challenger {metric} {new_overall:.4f} misses the floor {floor:g} (needs {cmp} {floor:g})")

    if champion is None:
        reasons.append("no champion yet: the floor alone decides" if floor is not None else "no champion yet")
    else:
        old_overall = overall[1][metric]
        if worse(new_overall, old_overall):
            ok = False
            reasons.append(
                f"overall {metric} {new_overall:.4f} is worse than the champion's {old_overall:.4f} by more than {tolerance:g}"
            )
        else:
            reasons.append(
                f"overall {metric} {new_overall:.4f} vs champion {old_overall:.4f}: within tolerance {tolerance:g}"
            )

    rows = []
    if frame is not None:
        missing = [s for s in slices if s not in frame.columns]
        if missing:
            raise GateError(
                f"Slice column(s) {', '.join(missing)} are not in the evaluation data. Choose slices among: {', '.join(map(str, frame.columns))}."
            )
        for column in slices:
            values = frame[column].astype(object).where(frame[column].notna(), "(missing)").astype(str).to_numpy()
            for value in sorted(set(values)):
                mask = values == value
                n = int(mask.sum())
                new = score(challenger, mask) if n else None
                old = score(champion, mask) if (n and champion is not None) else None
                if n < min_rows or new is None or (champion is not None and old is None):
                    verdict = "not judged"
                elif champion is None:
                    verdict = "no champion"
                else:
                    verdict = "worse" if worse(new, old) else "ok"
                rows.append(
                    {
                        "slice": column,
                        "value": value,
                        "rows": n,
                        "challenger": new,
                        "champion": old,
                        "delta": (new - old) if (new is not None and old is not None) else None,
                        "verdict": verdict,
                    }
                )
    slices_df = pd.DataFrame(rows, columns=["slice", "value", "rows", "challenger", "champion", "delta", "verdict"])
    bad = slices_df[slices_df["verdict"] == "worse"]
    if len(bad):
        ok = False
        for r in bad.itertuples():
            reasons.append(
                f"slice {r.slice}={r.value} ({r.rows} rows): {metric} {r.challenger:.4f} vs champion {r.champion:.4f}, "
                f"worse by more than {tolerance:g}"
            )
    elif champion is not None and slices:
        judged = int((slices_df["verdict"] == "ok").sum())
        reasons.append(
            f"all {judged} slices with >= {min_rows} rows within tolerance "
            f"({int((slices_df['verdict'] == 'not judged').sum())} smaller slices not judged)"
        )

    calibration = (
        _calibration(y, {"challenger": challenger, **({"champion": champion} if champion is not None else {})})
        if task == "classification"
        else pd.DataFrame()
    )
    return GateResult(
        decision=SHIP if ok else DO_NOT_SHIP,
        reasons=reasons,
        metric=metric,
        tolerance=tolerance,
        floor=floor,
        overall=overall_df,
        slices=slices_df,
        calibration=calibration,
    )


# ---- evaluation against the registry ----------------------------------------------------------------------
def evaluate(
    name: str | None = None,
    dataset: str | None = None,
    eval_where: str | None = None,
    challenger: str | int = registry.CHALLENGER,
    champion: str | int | None = registry.CHAMPION,
    slices: Sequence[str] | None = None,
    metric: str | None = None,
    tolerance: float = 0.01,
    floor: float | None = None,
    min_rows: int = 200,
    latency_rows: int = 1000,
    promote: bool = False,
    settings: Settings | None = None,
    spark=None,
) -> GateResult:
    """Score challenger and champion on the window `eval_where` of `dataset` and decide; with `promote`, a
    passing gate moves `champion` to the challenger (recorded in the registry history).

    name: the registered model (default: the model_name setting, else `<dataset>-<target name>` from the
    catalog's roles of `dataset`; with neither name nor dataset, the catalog's default_dataset). dataset: the
    evaluation data (default: the model's training dataset). eval_where: None or "" means the dataset's
    `windows: evaluate` role, else all rows. slices: columns judged value by value (default: see the module docstring).
    """
    from .data import load
    from .task import dataset_entry, default_model_name, resolve_dataset, window

    settings = settings or load_settings()
    if not name:  # the model_name setting, else the model of `dataset` (or of the catalog's default_dataset)
        dataset = dataset or (None if settings.model_name else resolve_dataset("", settings, GateError))
        name = default_model_name(dataset, settings, GateError) if dataset else settings.model_name
    registry.configure(settings)
    new_version = registry.get_version(name, challenger, settings)
    old_version = None
    if champion is not None:
        try:
            old_version = registry.get_version(name, champion, settings)
        except RegistryError:
            old_version = None  # no champion yet: the floor decides

    models = {"challenger": new_version, **({"champion": old_version} if old_version else {})}
    specs = {k: ModelSpec.load(v.uri, settings) for k, v in models.items()}
    new_spec = specs["challenger"]
    if len({(s.target, s.task, s.label_threshold) for s in specs.values()}) > 1:
        raise GateError(
            "Challenger and champion predict different targets (target, task or label threshold differ); "
            "they cannot be compared on one gate. Register the challenger under another model name."
        )
    dataset = dataset or new_spec.dataset
    eval_where = window(dataset, "evaluate", eval_where, settings, GateError)
    entry_roles = dataset_entry(dataset, settings).roles
    declared = entry_roles.slices
    if slices is None:
        slices = list(declared) if declared is not None else None
    columns = list(
        dict.fromkeys(
            [c for s in specs.values() for c in s.raw_columns]
            + [new_spec.target]
            + [c for c in (slices or [])]
            + ([new_spec.time_column] if new_spec.time_column else [])
        )
    )
    from .spark import get_spark

    spark = spark or get_spark(settings=settings)
    df = load(dataset, where=eval_where, purpose=f"evaluation gate {name}", settings=settings, spark=spark)
    present = [c for c in columns if c in df.columns]
    raw = df.select(*present).where(f"`{new_spec.target}` IS NOT NULL").toPandas()
    if raw.empty:
        raise GateError(f"No rows of '{dataset}' with a '{new_spec.target}' under eval_where; choose another window.")

    scores, latency, decorated, decorators = {}, {}, None, {}
    for role, version in models.items():
        spec = specs[role]
        if spec.feature_function not in decorators:  # load each function's lookups once
            decorators[spec.feature_function] = spec.decorator(settings, spark)
        full = decorators[spec.feature_function].apply_pandas(raw)
        if role == "challenger":
            decorated = full
        X = model_frame(full, list(spec.numeric), list(spec.categorical))
        model = model_contract.load_pyfunc(version.uri, settings, error=GateError)
        out = np.asarray(model.predict(X))
        scores[role] = out[:, 1] if spec.task == "classification" else out.reshape(-1)
        batch = X.head(latency_rows)
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            model.predict(batch)
            timings.append((time.perf_counter() - start) * 1000)
        latency[f"{role} v{version.version} ({len(batch)} rows)"] = round(float(np.median(timings)), 2)

    if slices is None:  # none declared: the low-cardinality categorical inputs of the challenger
        slices = low_cardinality(decorated, new_spec.categorical)
    missing = [s for s in slices if s not in decorated.columns]
    if missing:
        raise GateError(
            f"Slice column(s) {', '.join(missing)} are neither in '{dataset}' nor added by the feature function; "
            "choose slices among the dataset's columns."
        )
    slice_frame = decorated[list(slices)].copy()
    result = compare(
        new_spec.label(raw[new_spec.target]).to_numpy(),
        scores["challenger"],
        scores.get("champion"),
        frame=slice_frame,
        task=new_spec.task,
        slices=slices,
        metric=metric,
        tolerance=tolerance,
        floor=floor,
        min_rows=min_rows,
        decision_threshold=new_spec.decision_threshold,
    )
    result.latency_ms = latency
    result.name, result.window = name, eval_where or "(all rows)"
    target = entry_roles.target
    if target is not None and target.column == new_spec.target:
        result.description = entry_roles.description
    result.challenger_version = new_version.version
    result.champion_version = old_version.version if old_version else None
    if promote and result.passed:
        registry.promote(
            name,
            new_version.version,
            reason=f"gate passed on {result.window}: " + "; ".join(result.reasons[:2]),
            settings=settings,
        )
        result.promoted = True
    return result


# ---- calibration ----------------------------------------------------------------------------------------
def _calibration(y: np.ndarray, scores: dict[str, np.ndarray], bins: int = 10) -> pd.DataFrame:
    rows = []
    edges = np.linspace(0, 1, bins + 1)
    for model, s in scores.items():
        which = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
        for b in range(bins):
            mask = which == b
            if mask.any():
                rows.append(
                    {
                        "model": model,
                        "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                        "rows": int(mask.sum()),
                        "mean_predicted": float(s[mask].mean()),
                        "observed_rate": float(y[mask].mean()),
                    }
                )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["gap"] = frame["observed_rate"] - frame["mean_predicted"]
    return frame


def calibration_figure(calibration: pd.DataFrame):
    """Reliability diagram (observed rate against mean predicted probability, per model) as a Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    for model, part in calibration.groupby("model"):
        ax.plot(part["mean_predicted"], part["observed_rate"], marker="o", label=model)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title("Calibration on the evaluation window")
    ax.legend()
    fig.tight_layout()
    return fig


def _calibration_png(calibration: pd.DataFrame) -> str:
    buf = io.BytesIO()
    calibration_figure(calibration).savefig(buf, format="png")
    return f'<img alt="calibration" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'
