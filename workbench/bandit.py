"""Multi-armed bandit allocation: the maths only (posteriors, P(best), shares, the stop rule, a simulator).

    stats = [ArmStats("champion", n=400, total=41), ArmStats("challenger", n=380, total=52)]
    policy = Policy("thompson", min_share=0.05)
    p = p_best(stats, "binary", rng=np.random.default_rng(0))     # P(arm is best), by Monte Carlo
    shares = policy.shares(stats, "binary", p)                      # traffic share per arm, each >= min_share
    StopRule(0.95, min_outcomes=200).winner(stats, p)               # index of the winner, or None
    run = simulate([0.10, 0.12, 0.08], 20_000, Policy("thompson"), seed=1)   # allocation, reward, regret

No serving imports: `workbench.serving.experiment` applies this to live traffic; the simulation test and
`notebooks/07_bandit_analysis.ipynb` run it without a server.

Posteriors. Binary rewards (0/1): Beta(1 + successes, 1 + failures), the uniform prior. Numeric rewards: a
Gaussian approximation of the mean, Normal(mean, s^2 / n), where s^2 is the sample variance shrunk toward the
pooled variance of every arm by one pseudo-observation (so an arm with one outcome is not certain of its mean);
an arm without outcomes draws from the pooled mean with the pooled variance.

Policies. `thompson`: each arm's share is its posterior probability of being best (probability matching, which
is what Thompson sampling does per request, precomputed so a request only draws from fixed shares).
`epsilon-greedy`: (1 - epsilon) to the arm with the best observed mean, epsilon spread evenly. `fixed`: equal
shares (the A/B split the others are compared with). Every policy then keeps a floor: share = min_share +
(1 - k * min_share) * raw share, so no arm starves and the shares still sum to 1.

Stopping: when one arm's P(best) reaches `threshold` and at least `min_outcomes` outcomes are in, that arm has
won; the caller freezes the shares (and may promote it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ArmStats",
    "Policy",
    "StopRule",
    "Simulation",
    "POLICIES",
    "REWARD_KINDS",
    "posterior_draws",
    "p_best",
    "simulate",
    "beta_density",
]

POLICIES = ("thompson", "epsilon-greedy", "fixed")
REWARD_KINDS = ("binary", "numeric")
DRAWS = 4000  # Monte Carlo draws per arm for P(best): standard error at most 0.008


@dataclass
class ArmStats:
    """What is known of one arm: pulls (requests routed to it), n outcomes, their sum and sum of squares."""

    arm: str
    pulls: int = 0
    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    def add(self, rewards) -> None:
        r = np.asarray(rewards, dtype=float)
        self.n += int(r.size)
        self.total += float(r.sum())
        self.total_sq += float((r * r).sum())


def _pooled(stats: list[ArmStats]) -> tuple[float, float]:
    n = sum(s.n for s in stats)
    if n == 0:
        return 0.0, 1.0
    mean = sum(s.total for s in stats) / n
    var = max(sum(s.total_sq for s in stats) / n - mean * mean, 0.0)
    return mean, var if var > 0 else 1.0


def posterior_draws(stats: list[ArmStats], kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(arms, size) draws of each arm's mean reward from its posterior (see the module docstring)."""
    if kind not in REWARD_KINDS:
        raise ValueError(f"reward kind must be one of {REWARD_KINDS}; found {kind!r}")
    out = np.empty((len(stats), size))
    if kind == "binary":
        for i, s in enumerate(stats):
            out[i] = rng.beta(1.0 + s.total, 1.0 + s.n - s.total, size)
        return out
    pooled_mean, pooled_var = _pooled(stats)
    for i, s in enumerate(stats):
        if s.n == 0:
            out[i] = rng.normal(pooled_mean, np.sqrt(pooled_var), size)
            continue
        mean = s.mean
        ss = max(s.total_sq - s.n * mean * mean, 0.0)
        var = (ss + pooled_var) / s.n  # one pseudo-observation of the pooled variance
        out[i] = rng.normal(mean, np.sqrt(var / s.n), size)
    return out


def p_best(
    stats: list[ArmStats], kind: str = "binary", rng: np.random.Generator | None = None, draws: int = DRAWS
) -> np.ndarray:
    """P(arm has the highest mean reward), by Monte Carlo over the posteriors (ties split evenly)."""
    if not stats:
        return np.zeros(0)
    rng = rng if rng is not None else np.random.default_rng(0)
    samples = posterior_draws(stats, kind, draws, rng)
    best = samples.max(axis=0)
    winners = samples == best
    return (winners / winners.sum(axis=0)).mean(axis=1)


@dataclass(frozen=True)
class Policy:
    """How shares follow the evidence: `thompson`, `epsilon-greedy` or `fixed`, with a floor per arm."""

    name: str = "thompson"
    min_share: float = 0.05
    epsilon: float = 0.1

    def __post_init__(self):
        if self.name not in POLICIES:
            raise ValueError(f"bandit policy must be one of {', '.join(POLICIES)}; found {self.name!r}")
        if not 0 <= self.min_share < 1:
            raise ValueError(f"min_share must be in [0, 1); found {self.min_share}")
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1]; found {self.epsilon}")

    def check_arms(self, k: int) -> None:
        if k * self.min_share > 1:
            raise ValueError(f"{k} arms cannot each keep a minimum share of {self.min_share:g} (at most {1 / k:g}).")

    def shares(self, stats: list[ArmStats], kind: str, probabilities: np.ndarray | None = None) -> np.ndarray:
        """Traffic share per arm (sums to 1, each at least min_share). `probabilities`: P(best), for thompson."""
        k = len(stats)
        self.check_arms(k)
        if self.name == "fixed" or k == 1:
            raw = np.full(k, 1.0 / k)
        elif self.name == "thompson":
            raw = np.asarray(probabilities if probabilities is not None else p_best(stats, kind), dtype=float)
        else:
            means = np.array([s.mean if s.n else -np.inf for s in stats])
            raw = np.full(k, self.epsilon / k)
            if np.isfinite(means).any():
                best = np.flatnonzero(means == means.max())
                raw[best] += (1.0 - self.epsilon) / len(best)
            else:
                raw = np.full(k, 1.0 / k)
        raw = raw / raw.sum()
        return self.min_share + (1.0 - k * self.min_share) * raw


@dataclass(frozen=True)
class StopRule:
    """An arm wins when its P(best) >= threshold and at least `min_outcomes` outcomes are in (all arms)."""

    threshold: float = 0.95
    min_outcomes: int = 100

    def winner(self, stats: list[ArmStats], probabilities: np.ndarray) -> int | None:
        if not 0 < self.threshold <= 1 or len(probabilities) == 0:
            return None
        if sum(s.n for s in stats) < self.min_outcomes:
            return None
        best = int(np.argmax(probabilities))
        return best if probabilities[best] >= self.threshold else None


@dataclass
class Simulation:
    """One simulated experiment: per request the arm and reward; per update step the shares and P(best)."""

    policy: str
    arms: list[str]
    rates: np.ndarray  # the true mean reward of each arm
    arm: np.ndarray  # (N,) index of the arm each request went to
    reward: np.ndarray  # (N,) its reward
    steps: np.ndarray  # (S,) request index at which each update happened
    shares: np.ndarray  # (S, arms) shares in force after each update
    p_best: np.ndarray  # (S, arms)
    stopped_at: int | None = None  # request index of the stop, if the rule fired
    winner: int | None = None
    final: list[ArmStats] = field(default_factory=list)

    @property
    def regret(self) -> np.ndarray:
        """Cumulative expected regret: sum over requests of (best true rate - true rate of the arm chosen)."""
        return np.cumsum(self.rates.max() - self.rates[self.arm])

    @property
    def cumulative_reward(self) -> np.ndarray:
        return np.cumsum(self.reward)

    def allocation(self) -> np.ndarray:
        """(N, arms) running share of requests each arm received so far."""
        onehot = np.zeros((len(self.arm), len(self.arms)))
        onehot[np.arange(len(self.arm)), self.arm] = 1
        return np.cumsum(onehot, axis=0) / np.arange(1, len(self.arm) + 1)[:, None]


def simulate(
    rates,
    n_requests: int,
    policy: Policy,
    kind: str = "binary",
    batch: int = 100,
    delay: int = 200,
    stop: StopRule | None = None,
    noise: float = 1.0,
    seed: int = 0,
    arms: list[str] | None = None,
    draws: int = 1000,
) -> Simulation:
    """Serve `n_requests` with known true `rates` (Bernoulli, or Normal(rate, noise) for numeric rewards).

    Shares are recomputed every `batch` requests from the outcomes known by then: an outcome arrives `delay`
    requests after its request (outcomes known later). Once `stop` picks a winner the shares freeze."""
    rates = np.asarray(rates, dtype=float)
    k = len(rates)
    policy.check_arms(k)
    rng = np.random.default_rng(seed)
    names = list(arms or [f"arm{i}" for i in range(k)])
    arm = np.empty(n_requests, dtype=int)
    reward = np.empty(n_requests)
    shares = policy.shares([ArmStats(a) for a in names], kind, np.full(k, 1.0 / k))
    steps, share_rows, pbest_rows = [], [], []
    stopped_at = winner = None
    seen = 0  # outcomes of requests [0, seen) are known
    stats = [ArmStats(a) for a in names]
    for start in range(0, n_requests, batch):
        end = min(start + batch, n_requests)
        chosen = rng.choice(k, size=end - start, p=shares)
        arm[start:end] = chosen
        if kind == "binary":
            reward[start:end] = rng.random(end - start) < rates[chosen]
        else:
            reward[start:end] = rng.normal(rates[chosen], noise)
        for i in range(k):
            stats[i].pulls += int((chosen == i).sum())
        known = max(0, end - delay)
        if known > seen:
            for i in range(k):
                mask = arm[seen:known] == i
                stats[i].add(reward[seen:known][mask])
            seen = known
        probabilities = p_best(stats, kind, rng, draws)
        if winner is None:
            shares = policy.shares(stats, kind, probabilities)
            if stop is not None:
                winner = stop.winner(stats, probabilities)
                if winner is not None:
                    stopped_at = end
        steps.append(end)
        share_rows.append(shares.copy())
        pbest_rows.append(probabilities)
    return Simulation(
        policy.name,
        names,
        rates,
        arm,
        reward,
        np.asarray(steps),
        np.asarray(share_rows),
        np.asarray(pbest_rows),
        stopped_at,
        winner,
        stats,
    )


def beta_density(stats: ArmStats, grid: np.ndarray) -> np.ndarray:
    """The Beta(1 + successes, 1 + failures) density of a binary arm on `grid` (for plots)."""
    from math import lgamma

    a, b = 1.0 + stats.total, 1.0 + stats.n - stats.total
    grid = np.clip(np.asarray(grid, dtype=float), 1e-12, 1 - 1e-12)
    log_norm = lgamma(a + b) - lgamma(a) - lgamma(b)
    return np.exp(log_norm + (a - 1) * np.log(grid) + (b - 1) * np.log1p(-grid))
