"""The bandit maths (`workbench.bandit`) without a server: posteriors, shares with a floor, the stop rule, and
simulated experiments with known success rates and delayed outcomes, averaged over seeds."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.bandit import ArmStats, Policy, StopRule, p_best, posterior_draws, simulate

RATES = [0.10, 0.12, 0.08]  # arm1 is the true best
SEEDS = range(6)
N = 20_000


@pytest.fixture(scope="module")
def runs():
    out = {}
    for name in ("thompson", "epsilon-greedy", "fixed"):
        stop = None if name == "fixed" else StopRule(0.95, min_outcomes=1000)
        out[name] = [simulate(RATES, N, Policy(name, 0.05), stop=stop, delay=500, seed=s) for s in SEEDS]
    return out


@pytest.mark.parametrize("name", ["thompson", "epsilon-greedy"])
def test_bandit_regret_is_well_below_an_equal_split(runs, name):
    bandit = np.mean([r.regret[-1] for r in runs[name]])
    fixed = np.mean([r.regret[-1] for r in runs["fixed"]])
    assert fixed > 0
    assert bandit / fixed < 0.5, f"{name}: regret {bandit:.1f} vs equal split {fixed:.1f}"


@pytest.mark.parametrize("name", ["thompson", "epsilon-greedy"])
def test_every_arm_keeps_its_minimum_share(runs, name):
    for run in runs[name]:
        assert run.shares.min() >= 0.05 - 1e-12
        np.testing.assert_allclose(run.shares.sum(axis=1), 1.0)
        counts = np.bincount(run.arm, minlength=3)
        assert counts.min() / N > 0.04  # drawn from shares >= 5%: the worst arm still gets its traffic


def test_the_stop_rule_picks_the_true_best_arm(runs):
    for run in runs["thompson"]:
        assert run.winner == 1, f"stopped at {run.stopped_at} on arm {run.winner}"
        assert run.stopped_at is not None and run.stopped_at < N
        frozen = run.shares[run.steps >= run.stopped_at]
        assert (frozen == frozen[0]).all()  # shares freeze once the rule fires


def test_the_stop_rule_waits_for_min_outcomes():
    stats = [ArmStats("a", n=30, total=1), ArmStats("b", n=30, total=25)]
    p = p_best(stats)
    assert p[1] > 0.99
    assert StopRule(0.95, min_outcomes=100).winner(stats, p) is None
    assert StopRule(0.95, min_outcomes=60).winner(stats, p) == 1


def test_thompson_shares_follow_p_best_with_a_floor():
    stats = [ArmStats("a", n=1000, total=100), ArmStats("b", n=1000, total=150), ArmStats("c", n=1000, total=80)]
    p = p_best(stats, rng=np.random.default_rng(1))
    assert p[1] > 0.9 and abs(p.sum() - 1) < 1e-9
    shares = Policy("thompson", 0.1).shares(stats, "binary", p)
    assert shares.min() >= 0.1 and abs(shares.sum() - 1) < 1e-9 and shares.argmax() == 1
    no_data = Policy("thompson", 0.05).shares([ArmStats("a"), ArmStats("b")], "binary")
    np.testing.assert_allclose(no_data, [0.5, 0.5], atol=0.03)


def test_epsilon_greedy_gives_the_rest_to_the_best_mean():
    stats = [ArmStats("a", n=10, total=2), ArmStats("b", n=10, total=5)]
    shares = Policy("epsilon-greedy", 0.0, epsilon=0.2).shares(stats, "binary")
    np.testing.assert_allclose(shares, [0.1, 0.9])


def test_numeric_rewards_use_a_gaussian_posterior():
    rng = np.random.default_rng(3)
    a, b = ArmStats("a"), ArmStats("b")
    a.add(rng.normal(10.0, 2.0, 500))
    b.add(rng.normal(10.5, 2.0, 500))
    draws = posterior_draws([a, b], "numeric", 20_000, rng)
    assert abs(draws[0].mean() - a.mean) < 0.02 and abs(draws[0].std() - 2.0 / np.sqrt(500)) < 0.02
    assert p_best([a, b], "numeric")[1] > 0.95
    run = simulate([1.0, 1.3], 6000, Policy("thompson"), kind="numeric", noise=2.0, seed=2)
    assert np.bincount(run.arm)[1] > np.bincount(run.arm)[0]


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="policy"):
        Policy("ucb")
    with pytest.raises(ValueError, match="minimum share"):
        Policy("thompson", 0.4).shares([ArmStats("a"), ArmStats("b"), ArmStats("c")], "binary")
