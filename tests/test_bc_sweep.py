"""``sweeps/bc_ppo.py`` as a user runs it: demonstrations recorded (the scripted player of
``tests.helpers``), one BC run in the driver keeping a clone per budget, PPO trials that start
from the clone their ``bc_iterations`` names, and the BC stage stored beside the sweep."""

from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest
import torch
from ray.rllib.core.rl_module.rl_module import RLModule

from algos import ppo_config
from algos.algorithms import MarioPPO
from algos.imitation import clone_weights, load_clone
from envs import register_mario_env, validate_env_config
from envs.config import training_env_config
from envs.demonstrations import DemoRecorder
from sweeps import figures
from sweeps.queries import read_sweep
from tests.databases import create_database
from tests.helpers import (
    CONSOLE_NOISE,
    SCRIPTED_ENV,
    assert_nothing_written,
    gids,
    record_two_frame_stacks,
    rows,
    run_sweep,
    scripted_play,
)

pytestmark = pytest.mark.xdist_group("bc_sweep")  # one worker builds its module fixtures

NAME = "bc-smoke"


@dataclass(frozen=True)
class BcSweep:
    done: CompletedProcess
    db_url: str
    demos: Path
    state: Path

    @property
    def clones(self) -> Path:
        return self.state / "ray_results" / NAME / "bc"


@pytest.fixture(scope="module")
def bc_sweep(postgres_server, tmp_path_factory) -> BcSweep:
    """3 scripted episodes recorded, then ``bc_ppo.py --smoke`` on them (its 2 declared points,
    512 env steps each, no confirm stage, no evaluation: the BC stage is what this file checks)."""
    root = tmp_path_factory.mktemp("bc-sweep")
    demos = root / "demos"
    config = validate_env_config(training_env_config(SCRIPTED_ENV))
    scripted_play(range(3), DemoRecorder(demos, config, source="person:script"))
    db_url = create_database(postgres_server)
    done = run_sweep(
        "sweeps/bc_ppo.py",
        "--smoke",
        "--name",
        NAME,
        "--demos",
        str(demos),
        "--num-samples",
        "2",
        "--max-env-steps",
        "512",
        "--confirm-top",
        "0",
        "--eval-episodes",
        "0",
        "--wandb-mode",
        "disabled",
        "--db-url",
        db_url,
        tmp_path=root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return BcSweep(done=done, db_url=db_url, demos=demos, state=root / "state")


@pytest.mark.slow
def test_a_bc_sweep_clones_once_stores_what_it_learned_from_and_searches_the_budget(bc_sweep):
    db_url = bc_sweep.db_url
    [line] = [line for line in bc_sweep.done.stdout.splitlines() if line.startswith("bc ")]
    assert "40 iterations on 3 demonstration episodes" in line and "no env steps" in line
    assert "trials start from iterations 0, 10, 20, 40" in line
    console = bc_sweep.done.stdout + bc_sweep.done.stderr
    assert [line for line in console.splitlines() if CONSOLE_NOISE.search(line)] == []

    demonstrations = rows(
        db_url, "SELECT source, steps, path, flag_get FROM mario_sweeps.demonstrations"
    )
    assert len(demonstrations) == 3
    assert all(source == "person:script" and steps > 0 for source, steps, _, _ in demonstrations)
    assert all(
        Path(p).is_file() and Path(p).parent == bc_sweep.demos for _, _, p, _ in demonstrations
    )

    iterations = rows(
        db_url,
        "SELECT iteration, policy_loss, checkpoint FROM mario_sweeps.bc_iterations"
        " ORDER BY iteration",
    )
    assert [k for k, _, _ in iterations] == list(range(1, 41))
    kept = {k: checkpoint for k, _, checkpoint in iterations if checkpoint is not None}
    assert sorted(kept) == [10, 20, 40]
    assert all(Path(path).is_dir() for path in kept.values())
    losses = [loss for _, loss, _ in iterations]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # BC learned the script's actions
    # What --resume reuses instead of cloning again: the same clones, the same episodes.
    record = load_clone(bc_sweep.clones)
    assert record is not None and record.kept == kept and record.policy_loss == losses
    assert sorted(e.eps_id for e in record.episodes) == sorted(
        eps_id for (eps_id,) in rows(db_url, "SELECT eps_id FROM mario_sweeps.demonstrations")
    )

    budgets = rows(
        db_url,
        "SELECT (params->>'bc_iterations')::int FROM mario_sweeps.trials WHERE stage = 'search'",
    )
    started = sorted(b for (b,) in budgets)
    assert started == [0, 20]  # the sweep file's two points: from scratch, and from 20 iterations
    [(demos,)] = rows(db_url, "SELECT settings->>'demos' FROM mario_sweeps.sweeps")
    assert demos == str(bc_sweep.demos)

    # The report draws the BC stage and each trial from its clone on the env-step axis.
    drawn = gids(figures.imitation(read_sweep(db_url, NAME)))
    assert "bc_loss" in drawn and "bc_kept" in drawn
    assert sorted(int(g.rsplit(":", 1)[1]) for g in drawn if g.startswith("bc:")) == started
    page = (bc_sweep.state / "ray_results" / NAME / f"{NAME}.html").read_text(encoding="utf-8")
    assert '<section id="imitation">' in page and page.count("<tr><td>person:script</td>") == 3


@pytest.mark.slow
def test_a_trial_config_naming_a_budget_starts_from_that_clone(bc_sweep, ray_session):
    """What Tune hands a trial (its resolved config as a dict) builds PPO on the clone's weights;
    ``bc_iterations`` 0 starts from scratch."""
    register_mario_env()
    clone = RLModule.from_checkpoint(clone_weights(bc_sweep.clones, 20)).state_dict()

    def first_weights(budget: int) -> dict:
        config = ppo_config(
            env_config=SCRIPTED_ENV,
            hparams={"bc_iterations": budget, "num_env_runners": 0, "seed": 3},
            clones=str(bc_sweep.clones),
        )
        algo = MarioPPO(config=config.to_dict())
        try:
            return algo.learner_group._learner.module["default_policy"].state_dict()
        finally:
            algo.stop()

    cloned, scratch = first_weights(20), first_weights(0)
    assert cloned.keys() == clone.keys()
    assert all(torch.equal(cloned[k], clone[k]) for k in clone)
    assert not all(torch.equal(scratch[k], clone[k]) for k in clone)


def test_demonstrations_of_another_frame_stack_are_refused_before_anything_is_written(
    fresh_db_url, tmp_path
):
    demos = record_two_frame_stacks(tmp_path / "demos")

    done = run_sweep(
        "sweeps/bc_ppo.py",
        "--smoke",
        "--demos",
        str(demos),
        "--db-url",
        fresh_db_url,
        tmp_path=tmp_path,
        ray_head=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: --demos: demonstrations {str(demos)!r} were recorded with frame_stack 2; "
        "the trainer's is 4"
    ]
    assert_nothing_written(fresh_db_url, tmp_path / "state")
    missing = run_sweep(
        "sweeps/bc_ppo.py", "--smoke", "--db-url", fresh_db_url, tmp_path=tmp_path, ray_head=False
    )
    assert missing.returncode == 2 and "give --demos DIR" in missing.stderr
