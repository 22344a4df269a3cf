"""A/B analysis: compare two served variants on an outcome, from the prediction log joined with outcomes.

    preds = experiments.read_predictions(settings, "flights-late", since="2026-01-01")
    frame = experiments.join_outcomes(preds, outcomes, key="request_id", outcome="arrived_late")
    result = experiments.compare(frame, a="champion", b="challenger")
    result.table            # per variant: rows, successes, rate (+ Beta posterior mean and 95% interval)
    result.p_value, result.prob_b_beats_a, result.expected_loss_b, result.verdict

Each row is one trial with a binary `success`: by default "the variant's decision was right" (its
label, prediction >= threshold, equals the outcome), or the outcome itself (`success="outcome"`, e.g. a
conversion) when the variants drive what happens next. Two views of the same counts:

- frequentist: the two-proportion z-test (pooled; equal to Pearson's chi-square without continuity
  correction on the 2x2 table) with a Wald confidence interval for rate(B) - rate(A);
- Bayesian: Beta(1 + successes, 1 + failures) posteriors (uniform prior), P(rate B > rate A) and the
  expected loss of choosing each variant (E[max(other - chosen, 0)], in rate points), by Monte Carlo
  with a fixed seed.

Shadow rows are excluded (a shadow never affects outcomes). Entities are split by a stable hash, so a
row is a fair trial only if each entity's outcome is independent of other entities'; with many rows
per entity, pass `unit="entity_id"` to compare per-entity success rates instead of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .config import Settings, load_settings
from .errors import ExperimentError

__all__ = ["ABResult", "read_predictions", "join_outcomes", "compare", "simulate", "load_experiment", "plot_posteriors"]


@dataclass
class ABResult:
    a: str
    b: str
    table: pd.DataFrame  # index variant: rows, successes, rate, posterior_mean, ci95_low, ci95_high
    difference: float  # rate(B) - rate(A)
    ci_low: float  # (1 - alpha) Wald interval of the difference
    ci_high: float
    z: float
    p_value: float  # two-sided
    chi2: float
    alpha: float
    prob_b_beats_a: float
    expected_loss_a: float  # expected rate lost by choosing A if B is better
    expected_loss_b: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def verdict(self) -> str:
        better = self.b if self.difference > 0 else self.a
        freq = (
            f"{better} is better at the {1 - self.alpha:.0%} level (p = {self.p_value:.3g})"
            if self.significant
            else f"no significant difference (p = {self.p_value:.3g})"
        )
        return (
            f"{self.b} - {self.a} = {self.difference:+.4f} [{self.ci_low:+.4f}, {self.ci_high:+.4f}]: {freq}; "
            f"P({self.b} beats {self.a}) = {self.prob_b_beats_a:.3f}, expected loss choosing {self.b} = "
            f"{self.expected_loss_b:.5f}, choosing {self.a} = {self.expected_loss_a:.5f}."
        )

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "value": {
                    "difference (B - A)": self.difference,
                    f"{1 - self.alpha:.0%} CI low": self.ci_low,
                    f"{1 - self.alpha:.0%} CI high": self.ci_high,
                    "z": self.z,
                    "p-value": self.p_value,
                    "chi-square": self.chi2,
                    "P(B beats A)": self.prob_b_beats_a,
                    "expected loss choosing A": self.expected_loss_a,
                    "expected loss choosing B": self.expected_loss_b,
                }
            }
        )


def read_predictions(
    settings: Settings | None = None,
    model_name: str | None = None,
    since: str | None = None,
    include_shadow: bool = False,
    uri: str | None = None,
) -> pd.DataFrame:
    """The prediction log of `model_name` (parquet written by `workbench serve`) as pandas.

    `since`: an ISO date or timestamp; only rows at or after it. An empty frame when nothing is logged yet."""
    import pyarrow.dataset as ds

    from .storage import local_path

    settings = settings or load_settings()
    folder = local_path(uri or settings.predictions_uri) / (model_name or settings.model_name)
    if not folder.exists() or not any(folder.rglob("part-*.parquet")):
        return pd.DataFrame(
            columns=[
                "request_id",
                "entity_id",
                "timestamp",
                "model_version",
                "variant",
                "shadow",
                "prediction",
                "fallback",
            ]
        )
    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    filters = None
    if since:
        cut = (
            pd.Timestamp(since, tz="UTC")
            if pd.Timestamp(since).tzinfo is None
            else pd.Timestamp(since).tz_convert("UTC")
        )
        filters = ds.field("timestamp") >= cut.to_pydatetime()
    frame = dataset.to_table(filter=filters).to_pandas()
    return frame if include_shadow else frame[~frame["shadow"].astype(bool)].reset_index(drop=True)


def join_outcomes(
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    key: str = "request_id",
    outcome: str = "outcome",
    success: str = "correct",
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Predictions (one row per answered request) with their outcome and a 0/1 `success` column.

    success="correct": (prediction >= threshold) == outcome; success="outcome": the outcome itself.
    Rows without an outcome are dropped; rows answered by a fallback are kept under their variant
    (the variant's users saw that answer) and flagged in `fallback`."""
    for name, frame, cols in (
        ("predictions", predictions, [key, "variant", "prediction"]),
        ("outcomes", outcomes, [key, outcome]),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ExperimentError(
                f"The {name} lack the column(s) {', '.join(missing)}; pass key=/outcome= naming the right ones."
            )
    if success not in ("correct", "outcome"):
        raise ExperimentError(f"Parameter 'success' must be 'correct' or 'outcome'; found '{success}'.")
    right = outcomes[[key, outcome]].drop_duplicates(key)
    joined = predictions.merge(right, on=key, how="inner")
    values = pd.to_numeric(joined[outcome], errors="coerce")
    joined = joined[values.notna()].copy()
    values = values[values.notna()].astype(int)
    if not values.isin([0, 1]).all():
        raise ExperimentError(f"The outcome column '{outcome}' must hold 0/1 (or true/false) values.")
    joined["outcome"] = values.to_numpy()
    if success == "correct":
        joined["success"] = ((joined["prediction"].astype(float) >= threshold).astype(int) == joined["outcome"]).astype(
            int
        )
    else:
        joined["success"] = joined["outcome"]
    return joined.reset_index(drop=True)


def compare(
    frame: pd.DataFrame,
    a: str = "champion",
    b: str = "challenger",
    variant_col: str = "variant",
    success_col: str = "success",
    alpha: float = 0.05,
    unit: str | None = None,
    draws: int = 200_000,
    seed: int = 0,
) -> ABResult:
    """Frequentist and Bayesian comparison of variant `b` against `a` on the 0/1 `success_col`."""
    from scipy import stats

    for col in (variant_col, success_col):
        if col not in frame.columns:
            raise ExperimentError(f"The frame has no column '{col}'; join the outcomes first (join_outcomes).")
    if not 0 < alpha < 1:
        raise ExperimentError(f"Parameter 'alpha' must be between 0 and 1; found {alpha}.")
    data = frame[[variant_col, success_col] + ([unit] if unit else [])].dropna()
    if unit:  # one trial per unit: its majority success
        data = data.groupby([variant_col, unit], as_index=False)[success_col].mean()
        data[success_col] = (data[success_col] >= 0.5).astype(int)
    counts = data.groupby(variant_col)[success_col].agg(["count", "sum"])
    for v in (a, b):
        if v not in counts.index or counts.loc[v, "count"] == 0:
            raise ExperimentError(
                f"No rows for variant '{v}' (variants present: {', '.join(map(str, counts.index)) or 'none'})."
            )
    n_a, s_a = int(counts.loc[a, "count"]), int(counts.loc[a, "sum"])
    n_b, s_b = int(counts.loc[b, "count"]), int(counts.loc[b, "sum"])
    p_a, p_b = s_a / n_a, s_b / n_b
    diff = p_b - p_a

    pooled = (s_a + s_b) / (n_a + n_b)
    se_pooled = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = diff / se_pooled if se_pooled > 0 else 0.0
    p_value = float(2 * stats.norm.sf(abs(z)))
    table2 = np.array([[s_a, n_a - s_a], [s_b, n_b - s_b]])
    chi2 = float(stats.chi2_contingency(table2, correction=False)[0]) if (table2.sum(axis=0) > 0).all() else 0.0
    se = np.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    q = stats.norm.ppf(1 - alpha / 2)

    rng = np.random.default_rng(seed)
    post_a = rng.beta(1 + s_a, 1 + n_a - s_a, draws)
    post_b = rng.beta(1 + s_b, 1 + n_b - s_b, draws)
    rows = []
    for v, n, s in ((a, n_a, s_a), (b, n_b, s_b)):
        beta = stats.beta(1 + s, 1 + n - s)
        rows.append(
            {
                "variant": v,
                "rows": n,
                "successes": s,
                "rate": s / n,
                "posterior_mean": beta.mean(),
                "ci95_low": beta.ppf(0.025),
                "ci95_high": beta.ppf(0.975),
            }
        )
    return ABResult(
        a=a,
        b=b,
        table=pd.DataFrame(rows).set_index("variant"),
        difference=float(diff),
        ci_low=float(diff - q * se),
        ci_high=float(diff + q * se),
        z=float(z),
        p_value=p_value,
        chi2=chi2,
        alpha=alpha,
        prob_b_beats_a=float((post_b > post_a).mean()),
        expected_loss_a=float(np.maximum(post_b - post_a, 0).mean()),
        expected_loss_b=float(np.maximum(post_a - post_b, 0).mean()),
        extra={"draws": draws, "seed": seed, "unit": unit or "row"},
    )


def simulate(
    rows: int = 4000,
    split: float = 0.5,
    rate_a: float = 0.70,
    rate_b: float = 0.73,
    seed: int = 0,
    a: str = "champion",
    b: str = "challenger",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A synthetic experiment in the prediction log's format, and its outcomes (request_id, outcome).

    For demonstrations and tests only: variant B's decisions are right with probability `rate_b`, A's
    with `rate_a`."""
    rng = np.random.default_rng(seed)
    variant = np.where(rng.random(rows) < split, b, a)
    outcome = (rng.random(rows) < 0.3).astype(int)
    right = rng.random(rows) < np.where(variant == b, rate_b, rate_a)
    decision = np.where(right, outcome, 1 - outcome)
    prediction = np.clip(np.where(decision == 1, 0.5 + rng.random(rows) / 2, rng.random(rows) / 2), 0, 1)
    ids = [f"sim-{i}" for i in range(rows)]
    predictions = pd.DataFrame(
        {
            "request_id": ids,
            "entity_id": [f"entity-{i % max(1, rows // 3)}" for i in range(rows)],
            "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(rows), unit="s"),
            "model_version": np.where(variant == b, "2", "1"),
            "variant": variant,
            "shadow": False,
            "prediction": prediction,
            "fallback": False,
        }
    )
    return predictions, pd.DataFrame({"request_id": ids, "outcome": outcome})


def load_experiment(
    settings: Settings | None = None,
    model_name: str | None = None,
    outcomes_dataset: str = "",
    key: str = "request_id",
    outcome: str = "outcome",
    success: str = "correct",
    threshold: float = 0.5,
    since: str | None = None,
    simulate_rows: int = 4000,
    a: str = "champion",
    b: str = "challenger",
) -> tuple[pd.DataFrame, str]:
    """(joined frame, where it came from): the prediction log joined with `outcomes_dataset` (read through
    workbench.data.load), or - when no outcomes dataset is named - a simulated experiment, for demos."""
    if not outcomes_dataset:
        predictions, outcomes = simulate(rows=simulate_rows, a=a, b=b)
        return join_outcomes(
            predictions, outcomes, "request_id", "outcome", success, threshold
        ), f"a simulated experiment of {simulate_rows} rows (no outcomes_dataset given)"
    from .data import load

    settings = settings or load_settings()
    predictions = read_predictions(settings, model_name, since=since)
    if predictions.empty:
        raise ExperimentError(
            f"The prediction log of '{model_name or settings.model_name}' under {settings.predictions_uri} "
            "is empty; serve the model with `workbench serve` first, or check predictions_dir."
        )
    outcomes = load(outcomes_dataset, columns=[key, outcome], purpose="A/B analysis", settings=settings).toPandas()
    frame = join_outcomes(predictions, outcomes, key, outcome, success, threshold)
    return (
        frame,
        f"{len(predictions)} logged predictions of '{model_name or settings.model_name}' joined with '{outcomes_dataset}'",
    )


def plot_posteriors(result: ABResult):
    """The two Beta posteriors of the success rate (a matplotlib Figure)."""
    from matplotlib.figure import Figure
    from scipy import stats

    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    lows, highs = result.table["ci95_low"], result.table["ci95_high"]
    span = max(highs.max() - lows.min(), 1e-3)
    x = np.linspace(max(0.0, lows.min() - span / 2), min(1.0, highs.max() + span / 2), 400)
    for variant, row in result.table.iterrows():
        density = stats.beta(1 + row["successes"], 1 + row["rows"] - row["successes"]).pdf(x)
        ax.plot(x, density, label=f"{variant} (n={int(row['rows'])})")
        ax.fill_between(x, density, alpha=0.2)
    ax.set_xlabel("success rate")
    ax.set_ylabel("posterior density")
    ax.set_title(f"P({result.b} beats {result.a}) = {result.prob_b_beats_a:.3f}")
    ax.legend()
    fig.tight_layout()
    return fig
