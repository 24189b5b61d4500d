"""The BC stage of an imitation sweep (``sweeps/bc_ppo.py``): demonstrations in, one clone per
BC budget out, before any trial starts.

It runs in the driver, after Ray is connected and before the Tuner is built, never inside a
trial: Ray Data lists and samples the Parquet files in tasks of one CPU that no argument reaches,
and trials that hold every CPU leave none (measured: BC waited for as long as a trial beside it
ran). One BC run keeps the checkpoint after every budget ``bc_iterations`` can take (searched with
``tune.choice`` or fixed), so trials with the same budget start from the same clone and the
search compares budgets, not BC's noise. ``--resume`` reuses the clones the first run kept.
"""

from pathlib import Path
from typing import Any

from algos.imitation import Clone, clone, load_clone
from sweeps.options import Options, bc_budgets

__all__ = ["clone_stage", "imitation_rows"]


def clone_stage(options: Options) -> Clone:
    """BC once, keeping a checkpoint at every budget (reused if a first run kept them all)."""
    budgets = bc_budgets(options.sweep, options.hparams)
    done = load_clone(options.clone_dir)
    if done is None or not {b for b in budgets if b} <= set(done.kept):
        assert options.demos is not None  # check_imitation: a sweep with imitation has them
        done = clone(
            options.demos,
            folder=options.clone_dir,
            keep=budgets,
            env_config=options.env_config,
            hparams={**options.bc_hparams, "seed": options.sweep.seed},
        )
    episodes = done.episodes
    losses = done.policy_loss
    print(
        f"bc          {len(losses)} iterations on {len(episodes)} demonstration episodes "
        f"({sum(e.steps for e in episodes):,} steps, {sum(e.flag_get for e in episodes)} flags)"
        + (f", policy loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "")
        + f", {done.seconds:g} s, no env steps; trials start from iterations "
        + ", ".join(map(str, budgets))
    )
    return done


def imitation_rows(options: Options) -> dict[str, list[dict[str, Any]]] | None:
    """The ``demonstrations`` and ``bc_iterations`` rows of the sweep's BC stage (None before it
    ran, or for a sweep without one)."""
    done = load_clone(options.clone_dir) if options.demos else None
    if done is None:
        return None
    folder = Path(done.demos)
    demonstrations = [
        {
            "eps_id": e.eps_id,
            "source": e.source,
            "task_id": e.task_id,
            "steps": e.steps,
            "episode_return": e.episode_return,
            "x_pos": e.x_pos,
            "flag_get": e.flag_get,
            "path": str(folder / e.file),
        }
        for e in done.episodes
    ]
    bc_iterations = [
        {"iteration": k, "policy_loss": loss, "checkpoint": done.kept.get(k)}
        for k, loss in enumerate(done.policy_loss, start=1)
    ]
    return {"demonstrations": demonstrations, "bc_iterations": bc_iterations}
