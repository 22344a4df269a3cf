"""The bandit analysis of `notebooks/07_bandit_analysis.ipynb`: a fixed split and a bandit side by side -
allocation over time, cumulative reward and regret against the best arm in hindsight, and each arm's posterior.

    runs = bandit_analysis.simulated([0.10, 0.12, 0.08], 20_000, ["thompson", "fixed"], min_share=0.05)
    runs = {"served": bandit_analysis.served(settings, "flights-late")}      # a live experiment's outcome store
    bandit_analysis.summary(runs); bandit_analysis.plot(runs)                # a table; a matplotlib Figure

A served experiment is read from its outcome store (`workbench.serving.outcomes`): each request's arm in
arrival order, its reward where one was fed back, and the shares after each recomputation. Its "rates" are the
observed mean reward of each arm (hindsight), so its regret is an estimate; a simulation knows the true rates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .bandit import ArmStats, Policy, Simulation, StopRule, beta_density, posterior_draws, simulate
from .config import Settings

__all__ = ["simulated", "served", "summary", "plot"]


def simulated(
    rates,
    n_requests: int,
    policies=("thompson", "fixed"),
    min_share: float = 0.05,
    stop_at: float = 0.95,
    min_outcomes: int = 1000,
    delay: int = 500,
    kind: str = "binary",
    seed: int = 0,
    arms: list[str] | None = None,
) -> dict[str, Simulation]:
    """The same experiment (same seed) under each policy; the stop rule applies to the bandits only."""
    out = {}
    for name in policies:
        stop = StopRule(stop_at, min_outcomes) if name != "fixed" and stop_at > 0 else None
        out[name] = simulate(rates, n_requests, Policy(name, min_share), kind, delay=delay, stop=stop, seed=seed,
                             arms=arms)  # fmt: skip
    return out


def served(settings: Settings, model_name: str) -> Simulation:
    """A served experiment as a `Simulation` (rewards NaN where none was fed back)."""
    from .serving.outcomes import OutcomeStore

    store = OutcomeStore.for_model(settings, model_name)
    try:
        state = store.state()
        arms = list(state.get("arms") or [])
        rows = store.history()
        allocations = store.allocations()
    finally:
        store.close()
    if not arms:
        arms = sorted({r[0] for r in rows})
    index = {a: i for i, a in enumerate(arms)}
    rows = [r for r in rows if r[0] in index]
    arm = np.array([index[r[0]] for r in rows], dtype=int)
    reward = np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=float)
    stats = [ArmStats(a) for a in arms]
    for i, s in enumerate(stats):
        got = reward[(arm == i) & ~np.isnan(reward)]
        s.pulls = int((arm == i).sum())
        s.add(got)
    rates = np.array([s.mean if s.n else 0.0 for s in stats])
    ts = np.array([r[2] for r in rows])
    steps = np.searchsorted(ts, [a["ts"] for a in allocations]) if len(ts) else np.zeros(0, dtype=int)
    shares = np.array([a["shares"] for a in allocations]) if allocations else np.zeros((0, len(arms)))
    pbest = np.array([a["p_best"] for a in allocations]) if allocations else np.zeros((0, len(arms)))
    winner = state.get("winner") or {}
    return Simulation(
        state.get("policy", "fixed split"), arms, rates, arm, reward, steps, shares, pbest,
        None, index.get(winner.get("arm")), stats,
    )  # fmt: skip


def summary(runs: dict[str, Simulation]) -> pd.DataFrame:
    """Per run and arm: requests, share of traffic, outcomes, mean reward; and the run's total regret."""
    rows = []
    for name, run in runs.items():
        total = len(run.arm)
        regret = float(run.regret[-1]) if total else 0.0
        reward = float(np.nansum(run.reward))
        for i, s in enumerate(run.final):
            rows.append(
                {
                    "run": name,
                    "arm": s.arm,
                    "true or hindsight rate": float(run.rates[i]),
                    "requests": int((run.arm == i).sum()),
                    "traffic share": float((run.arm == i).mean()) if total else 0.0,
                    "outcomes": s.n,
                    "mean reward": s.mean if s.n else np.nan,
                    "run reward": reward,
                    "run regret": regret,
                    "stopped at request": run.stopped_at,
                    "winner": run.arms[run.winner] if run.winner is not None else None,
                }
            )
    return pd.DataFrame(rows).set_index(["run", "arm"])


def plot(runs: dict[str, Simulation], kind: str = "binary"):
    """Allocation over time, cumulative reward, cumulative regret and the final posteriors (a Figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.2 * len(runs)))
    axes = fig.subplots(len(runs), 4, squeeze=False)
    for row, (name, run) in zip(axes, runs.items()):
        x = np.arange(1, len(run.arm) + 1)
        alloc = run.allocation() if len(run.arm) else np.zeros((0, len(run.arms)))
        for i, arm in enumerate(run.arms):
            row[0].plot(x, alloc[:, i], label=arm)
        if run.stopped_at:
            for ax in row[:3]:
                ax.axvline(run.stopped_at, color="grey", linestyle=":", linewidth=1)
        row[0].set_title(f"{name}: share of requests so far")
        row[0].set_ylim(0, 1)
        row[0].legend(fontsize=8)
        row[1].plot(x, np.nancumsum(run.reward))
        row[1].set_title("cumulative reward")
        row[2].plot(x, run.regret if len(run.arm) else x * 0.0)
        row[2].set_title("cumulative regret vs the best arm")
        grid = np.linspace(0, 1, 2001) if kind == "binary" else None
        for s in run.final:
            if kind == "binary":
                row[3].plot(grid, beta_density(s, grid), label=s.arm)
            else:
                draws = posterior_draws([s], "numeric", 4000, np.random.default_rng(0))[0]
                row[3].hist(draws, bins=60, density=True, alpha=0.5, label=s.arm)
        if kind == "binary" and run.final:
            means = [s.mean for s in run.final if s.n]
            if means:
                centre, width = float(np.mean(means)), max(0.05, 4 * float(np.std(means)) + 0.02)
                row[3].set_xlim(max(0, centre - width), min(1, centre + width))
        row[3].set_title("posterior of each arm's mean reward")
        row[3].legend(fontsize=8)
        for ax in row[:3]:
            ax.set_xlabel("requests")
    fig.tight_layout()
    return fig
