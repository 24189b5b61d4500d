"""The best agent of a sweep, evaluated after ``tuner.fit()``: episodes stored, a video, W&B.

Needs no Ray actor: the checkpoint's RLModule is loaded in this process (``algos.checkpoints``)
and played by ``algos.evaluate``, greedily and, if asked, sampling from the policy. Each episode
becomes a row of ``mario_sweeps.evaluations``; the best episode's video is written next to the
report and logged to the best trial's W&B run (offline runs keep it in their files).
"""

from dataclasses import dataclass
from pathlib import Path

from algos.checkpoints import load_policy
from algos.evaluate import Protocol, evaluate
from callbacks.records import evaluation_row
from callbacks.store import ResultsStore
from sweeps.queries import best_checkpoint, sweep_row, unevaluated_confirm_trials

__all__ = ["Evaluation", "evaluate_best", "evaluate_trials"]


@dataclass(frozen=True)
class Evaluation:
    trial_id: str
    checkpoint: str
    policy: str
    protocol: str
    episodes: int
    x_pos_mean: float
    flag_rate: float
    video: Path | None

    def summary(self) -> str:
        video = f", video {self.video}" if self.video else ""
        return (
            f"evaluation  trial {self.trial_id}, {self.episodes} episodes ({self.protocol}): "
            f"mean x_pos {self.x_pos_mean:,.0f}, flag rate {self.flag_rate:.0%}{video}"
        )


def evaluate_best(
    db_url: str,
    name: str,
    *,
    episodes: int,
    out_dir: Path,
    sample: bool = False,
    wandb_mode: str = "disabled",
    wandb_project: str = "mario-sweeps",
    experiment_dir: Path | None = None,
) -> list[Evaluation]:
    """Evaluate the sweep's best checkpoint (greedy, plus sampled with ``sample``); [] if the
    sweep recorded no checkpoint. The W&B run goes into the trial's folder of ``experiment_dir``
    (``<algo>_<trial id>``), beside the run Tune's W&B callback wrote."""
    sweep = sweep_row(db_url, name)
    best = best_checkpoint(db_url, sweep)
    if best is None:
        return []
    trial_id, checkpoint = best
    with ResultsStore(db_url, sweep_id=sweep["id"]) as store:
        done = [
            _evaluate(store, trial_id, checkpoint, mode, episodes=episodes, video=video)
            for mode in (("greedy", "sample") if sample else ("greedy",))
            for video in [out_dir / f"best-{mode}.mp4"]
        ]
    if wandb_mode != "disabled":
        trial_dir = next(experiment_dir.glob(f"*_{trial_id}"), None) if experiment_dir else None
        _log_to_wandb(done, project=wandb_project, group=name, mode=wandb_mode, dir=trial_dir)
    return done


def _evaluate(
    store: ResultsStore,
    trial_id: str,
    checkpoint: str,
    mode: str,
    *,
    episodes: int,
    video: Path | None,
) -> Evaluation:
    """Play one checkpoint ``episodes`` times (``greedy`` or ``sample``) and store the rows."""
    protocol = Protocol(sample=mode == "sample")
    results = evaluate(load_policy(checkpoint), episodes=episodes, protocol=protocol, video=video)
    store.write_evaluations(
        trial_id,
        [
            evaluation_row(
                r, protocol, checkpoint=checkpoint, video=None if video is None else str(video)
            )
            for r in results
        ],
    )
    return Evaluation(
        trial_id=trial_id,
        checkpoint=checkpoint,
        policy=mode,
        protocol=protocol.describe(),
        episodes=len(results),
        x_pos_mean=sum(r.x_pos for r in results) / len(results),
        flag_rate=sum(r.flag_get for r in results) / len(results),
        video=video if video is not None and video.exists() else None,
    )


def evaluate_trials(db_url: str, name: str, *, episodes: int) -> list[Evaluation]:
    """Evaluate (greedy, no video) every finished confirm trial's kept best checkpoint that has
    no evaluation yet: the evaluation flag rate over seeds is one of the confirm statistics."""
    sweep = sweep_row(db_url, name)
    todo = unevaluated_confirm_trials(db_url, sweep)
    with ResultsStore(db_url, sweep_id=sweep["id"]) as store:
        return [
            _evaluate(store, trial_id, checkpoint, "greedy", episodes=episodes, video=None)
            for trial_id, checkpoint in todo
            if Path(checkpoint).exists()
        ]


def _log_to_wandb(done: list[Evaluation], *, project: str, group: str, mode: str, dir) -> None:
    """Add the evaluation to the best trial's W&B run (same id: ``wandb sync`` merges them)."""
    import wandb

    run = wandb.init(
        project=project,
        group=group,
        id=done[0].trial_id,
        resume="allow",
        mode=mode,  # type: ignore[arg-type]  # a W&B mode: sweeps.options/argparse checked it
        dir=str(dir) if dir else None,
        # W&B records the process's command line (x_disable_meta=False): a --db-url password
        # would be in the run files, and uploaded by `wandb sync`. The trial's own run (logged
        # by Ray's actors) already holds the system facts.
        settings=wandb.Settings(silent=True, x_disable_meta=True),
    )
    try:
        for evaluation in done:
            logged: dict[str, object] = {
                f"evaluation/{evaluation.policy}/x_pos_mean": evaluation.x_pos_mean,
                f"evaluation/{evaluation.policy}/flag_rate": evaluation.flag_rate,
            }
            if evaluation.video is not None:
                logged[f"evaluation/{evaluation.policy}/best_episode"] = wandb.Video(
                    str(evaluation.video), format="mp4"
                )
            run.log(logged)
    finally:
        run.finish()
