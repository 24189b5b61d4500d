"""Seed statistics on data with a known answer: IQM intervals that cover, verdicts that are right.

The scores are drawn from known distributions; the comparisons read them back from a real
PostgreSQL through the same rows a confirm stage writes (stage 'confirm', seed, repeats,
final_metric), so ``sweeps.compare`` and ``confirmed_configs`` are tested end to end on the store.
"""

import doctest

import numpy as np
import psycopg2
import pytest
from scipy import stats as scipy_stats

from callbacks.store.schema import prepare_database
from callbacks.store.store import ResultsStore
from sweeps import compare, confirm, stats
from sweeps.leaderboard import confirmed_table


def true_iqm(distribution) -> float:
    """The IQM of a distribution: its mean between the 25th and 75th percentiles."""
    q25, q75 = distribution.ppf([0.25, 0.75])
    return distribution.expect(lambda x: x, lb=q25, ub=q75, conditional=True)


def test_doctests():
    assert doctest.testmod(stats).failed == 0


@pytest.mark.parametrize(
    "distribution",
    [scipy_stats.norm(1_000, 150), scipy_stats.gamma(2.0, scale=300.0)],
    ids=["normal", "skewed"],
)
def test_the_95_percent_intervals_cover_the_true_iqm_about_95_percent_of_the_time(distribution):
    truth = true_iqm(distribution)
    rng = np.random.default_rng(7)
    draws = 300
    covered = sum(
        stats.iqm_interval(distribution.rvs(size=10, random_state=rng), seed=i).covers(truth)
        for i in range(draws)
    )
    # The percentile bootstrap is a little narrow at 10 seeds (rliable's intervals are too).
    assert 0.88 <= covered / draws <= 0.99, covered / draws


def test_an_interval_is_narrower_with_more_seeds_and_needs_two():
    rng = np.random.default_rng(0)
    few = stats.iqm_interval(rng.normal(0, 1, 5))
    many = stats.iqm_interval(rng.normal(0, 1, 80))
    assert many.high - many.low < few.high - few.low
    with pytest.raises(stats.StatsError, match="needs at least 2 seeds"):
        stats.iqm_interval([3.0])


def test_probability_of_improvement_counts_pairs_and_ties_half():
    assert stats.probability_of_improvement([5, 6], [1, 2]) == 1.0
    assert stats.probability_of_improvement([1, 2], [5, 6]) == 0.0
    assert stats.probability_of_improvement([1, 1], [1, 1]) == 0.5


def test_verdicts_for_a_real_difference_and_for_none_and_for_min_mode():
    rng = np.random.default_rng(3)
    better, worse = rng.normal(1_500, 100, 8), rng.normal(1_000, 100, 8)
    c = stats.compare_scores(better, worse, a_label="A", b_label="B")
    assert c.verdict.startswith("A better than B") and c.difference.low > 0
    assert c.probability_of_improvement > 0.9
    flipped = stats.compare_scores(worse, better, a_label="A", b_label="B")
    assert flipped.verdict.startswith("B better than A")
    # With mode 'min' lower is better: the same numbers, the other verdict.
    assert stats.compare_scores(better, worse, mode="min").verdict.startswith("B better than A")
    same = stats.compare_scores(rng.normal(1_000, 100, 5), rng.normal(1_000, 100, 5))
    assert same.verdict.startswith("no detectable difference at N=5 seeds; ~")
    assert "seeds per side would be needed" in same.verdict
    identical = stats.compare_scores([2.0, 2.0], [2.0, 2.0])
    assert identical.verdict.endswith("the runs scored the same")


def test_equal_distributions_give_no_detectable_difference_in_most_draws():
    rng = np.random.default_rng(11)
    detected = sum(
        not stats.compare_scores(
            rng.normal(800, 120, 5), rng.normal(800, 120, 5), seed=i
        ).verdict.startswith("no detectable")
        for i in range(100)
    )
    assert detected <= 15  # a 95 % interval excludes 0 in ~5-10 % of equal pairs at N=5


# -- through the store ---------------------------------------------------------------------------

SCORES = {
    # search trial -> the distribution its config's seeds are drawn from
    "good": (1_500.0, 100.0),
    "same": (1_500.0, 100.0),
    "bad": (900.0, 100.0),
}


def write_confirmed_sweep(db_url: str, name: str = "known", seeds: int = 8) -> None:
    """A finished sweep with three search trials and ``seeds`` confirm runs of each."""
    prepare_database(db_url)
    rng = np.random.default_rng(5)
    with ResultsStore(db_url) as store:
        store.start_sweep(
            name=name,
            algo="PPO",
            search_space={"lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}},
            metric="mario/x_pos_smoothed",
            mode="max",
            settings={"max_env_steps": 1_000},
        )
        for i, (trial, (mean, sd)) in enumerate(SCORES.items()):
            store.upsert_trial(
                trial, params={"lr": 1e-4 * (i + 1)}, status="terminated", best_metric=mean
            )
            for seed in confirm.confirm_seeds(seeds):
                store.upsert_trial(
                    f"{trial}-{seed}",
                    params={"lr": 1e-4 * (i + 1)},
                    stage="confirm",
                    seed=seed,
                    repeats=trial,
                    status="terminated",
                    final_metric=float(rng.normal(mean, sd)),
                )
                for k, steps in enumerate((250, 500, 1_000), start=1):
                    flags = 0.5 if trial == "good" and steps >= 500 else 0.0
                    store.write_iteration(
                        f"{trial}-{seed}",
                        {"training_iteration": k, "env_steps_lifetime": steps, "flag_rate": flags},
                    )
        store.finish_sweep("finished")


def row_count(db_url: str) -> int:
    with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM mario_sweeps.sweeps)"
            " + (SELECT count(*) FROM mario_sweeps.trials)"
        )
        return cur.fetchone()[0]


def test_confirmed_configs_rank_by_iqm_and_compare_gives_the_known_verdicts(fresh_db_url, capsys):
    write_confirmed_sweep(fresh_db_url)
    ranked = confirm.confirmed_configs(fresh_db_url, "known")
    assert [c.n for c in ranked] == [8, 8, 8]
    assert ranked[-1].repeats == "bad" and {c.repeats for c in ranked[:2]} == {"good", "same"}
    assert ranked[0].probability_of_improvement is None
    assert ranked[-1].probability_of_improvement > 0.95
    assert all(abs(c.final.value - SCORES[c.repeats][0]) < 100 for c in ranked)  # sd/sqrt(8): 35

    assert compare.main(["known:good", "known:bad", "--db-url", fresh_db_url]) == 0
    out = capsys.readouterr().out
    assert "verdict: known:good better than known:bad" in out
    assert "config of good, 8 confirm runs" in out and "P(A > B) 1.00" in out
    # Env steps to the first training flag: good flags at 500; bad never, counted at the budget.
    assert "first flag in training: 500 [500, 500] env steps (never: 0 of 8" in out
    assert "first flag in training: 1,000 [1,000, 1,000] env steps (never: 8 of 8" in out

    assert compare.main(["known:good", "known:same", "--db-url", fresh_db_url]) == 0
    assert "verdict: no detectable difference at N=8 seeds" in capsys.readouterr().out

    table = confirmed_table(ranked, metric="mario/x_pos_smoothed")
    assert table.count("\n") == 5 and "[" in table  # header lines + 3 configs with intervals


@pytest.mark.parametrize(
    ("sides", "message"),
    [
        (["known:good", "known:good"], "is the same runs as"),
        (["known:good"], "allowed: two or more"),
        (["known:nope", "known:bad"], "has no search trial 'nope'"),
        (["known:good-1000", "known:bad"], "has no search trial 'good-1000'"),
        (["nosuch", "known:bad"], "no sweep named 'nosuch'"),
        (["one:only", "known:bad"], "has 1 scored run(s); a confidence interval needs at least 2"),
        (["one:lonely", "known:bad"], "'one:lonely' has no finished full-budget runs"),
        (["longer", "known:bad"], "the sides ran different budgets ('longer' 2,000 env steps"),
    ],
)
def test_compare_refuses_bad_sides_in_one_line(fresh_db_url, capsys, sides, message):
    write_confirmed_sweep(fresh_db_url)
    write_confirmed_sweep_with_one_seed(fresh_db_url)
    with ResultsStore(fresh_db_url) as store:  # two search trials of a 2,000-step sweep
        store.start_sweep(
            name="longer",
            algo="PPO",
            search_space={},
            metric="mario/x_pos_smoothed",
            mode="max",
            settings={"max_env_steps": 2_000},
        )
        for k in range(2):
            store.upsert_trial(f"l{k}", params={}, status="terminated", final_metric=float(k))
        store.finish_sweep("finished")
    before = row_count(fresh_db_url)
    assert compare.main([*sides, "--db-url", fresh_db_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert row_count(fresh_db_url) == before


def write_confirmed_sweep_with_one_seed(db_url: str) -> None:
    with ResultsStore(db_url) as store:
        store.start_sweep(
            name="one", algo="PPO", search_space={}, metric="mario/x_pos_smoothed", mode="max"
        )
        store.upsert_trial("only", params={}, status="terminated", best_metric=1.0)
        store.upsert_trial("lonely", params={}, status="terminated", best_metric=2.0)
        store.upsert_trial(
            "only-1000",
            stage="confirm",
            seed=1000,
            repeats="only",
            status="terminated",
            final_metric=1.0,
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuch"], "no sweep named 'nosuch'"),
        (["known", "--top", "-1"], "--top -1 is not allowed"),
        (["known", "--seeds", "-2"], "--seeds -2 is not allowed"),
        (["known", "--max-concurrent", "0"], "--max-concurrent 0 is not allowed"),
        (["one"], "was recorded without its settings"),
        (["known", "--address", "bogus"], "--address 'bogus' is not allowed"),
        (["known", "--top", "1e3"], "argument --top: invalid int value: '1e3'"),
        # The sweep files' own connection and evaluation flags, checked by the same code:
        (["known", "--gpus-per-learner", "-1"], "--gpus-per-learner -1.0 is not allowed"),
        (["known", "--wandb-project", "a/b"], "--wandb-project 'a/b' is not allowed"),
        (["known", "--eval-episodes", "5000"], "--eval-episodes 5000 is not allowed"),
    ],
)
def test_confirm_refuses_bad_requests_before_anything_runs(fresh_db_url, capsys, args, message):
    write_confirmed_sweep(fresh_db_url)
    write_confirmed_sweep_with_one_seed(fresh_db_url)
    before = row_count(fresh_db_url)
    assert confirm.main([*args, "--db-url", fresh_db_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert row_count(fresh_db_url) == before


def test_a_plan_skips_the_config_seed_pairs_that_finished(fresh_db_url):
    write_confirmed_sweep(fresh_db_url, seeds=2)
    plan = confirm.plan_confirm(fresh_db_url, "known", top=2, seeds=3)
    # The two best search trials by best metric ("good" and "same", 1,500 each) get seed 1002.
    assert [c.trial_id for c in plan.candidates] == ["good", "same"]
    assert [(c.trial_id, seed) for c, seed in plan.missing] == [("good", 1002), ("same", 1002)]
    assert confirm.plan_confirm(fresh_db_url, "known", top=2, seeds=2).missing == []


@pytest.mark.parametrize("module", [compare, confirm])
def test_help_says_95_percent_as_written(module, capsys):
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0 and "95 %" in text and "%%" not in text
