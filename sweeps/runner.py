"""The shared sweep runner: every sweep file calls ``main(SWEEP)``; ``run`` reads in one screen.

The order is deliberate, and it is the order of :func:`run`:

1. ``parse_options``: every flag, the env_config, the hyperparameters and the storage path are
   checked (no Ray, no database): a bad value is one line and exit code 2;
2. ``prepare_database``: connect, migrate the schema once, and check the sweep's name is free (or,
   with ``--resume``, that there is a sweep to continue);
3. ``connect_ray``: join ``--address`` (checked reachable first) or start a local Ray with the
   dashboard on 127.0.0.1, and check the cluster has the resources the trials ask for;
4. ``clone_stage`` (a sweep with ``imitation``): RLlib's BC on ``--demos`` in this process, a
   checkpoint kept for every ``bc_iterations`` a trial may start from (:mod:`sweeps.imitation`);
5. ``build_tuner``: pure builders — searcher, scheduler, stopper, callbacks — into a ``Tuner``;
6. ``tuner.fit()``: only now is a row written: ``PostgresCallback.setup`` creates the sweep row;
   meanwhile ``LiveReport`` rewrites the HTML report every few minutes;
7. the best checkpoint played (``evaluate_at_end``), then the confirm stage (``confirm_at_end``,
   :mod:`sweeps.confirm`): the top ``--confirm-top`` configs re-run over ``--confirm-seeds``
   fresh seeds, ranked by IQM with bootstrap intervals;
8. the leaderboard read back from the database (confirmed configs first) and the final report.

So nothing is written (no sweep row, no Optuna study, no experiment directory) until Ray is
connected and every input has been accepted; the BC stage's rows are written with the sweep row.
"""

import signal
import sys
from pathlib import Path

import ray

from algos import CheckpointError
from callbacks.store import (
    StoreError,
    embedded_db_url,
    find_sweep,
    mask_url,
    prepare_database,
    remember_password,
    set_sweep_status,
)
from envs import register_mario_env
from sweeps.cli import SweepError
from sweeps.confirm import ConfirmError, run_confirm
from sweeps.evaluation import evaluate_best
from sweeps.imitation import clone_stage
from sweeps.leaderboard import leaderboard
from sweeps.live import LiveReport
from sweeps.options import Options, parse_options, warn_about_password
from sweeps.queries import ReportError, sweep_row
from sweeps.report import write_report
from sweeps.spec import Sweep
from sweeps.tuner import build_tuner, connect_ray

__all__ = ["main", "run"]


def check_database(options: Options, db_url: str) -> None:
    """Migrate once and check the name: free for a new sweep, present for ``--resume``."""
    try:
        prepare_database(db_url)
        existing = find_sweep(db_url, options.name)
    except StoreError as err:
        raise SweepError(str(err)) from None
    if existing is not None and not options.resume:
        raise SweepError(
            f"a sweep named {options.name!r} already exists (id {existing['id']}, "
            f"{existing['status']}, {existing['trials']} trials, started "
            f"{existing['started_at']:%Y-%m-%d %H:%M}); continue it with --resume --name "
            f"{options.name}, or pick a new --name"
        )
    if existing is not None and existing["algo"] != options.sweep.algo:
        raise SweepError(
            f"--resume --name {options.name}: that sweep trains {existing['algo']}, this sweep "
            f"file {options.sweep.algo}; allowed: the sweep file that started it"
        )


def run(options: Options) -> int:
    """Run (or resume) the sweep; return the process exit code."""
    db_url = options.db_url or embedded_db_url()
    check_database(options, db_url)
    warn_about_password(db_url)
    remember_password(db_url)  # for the callback and study a --resume unpickles without it
    register_mario_env()
    dashboard = connect_ray(options)
    try:
        if options.demos:
            clone_stage(options)
        tuner = build_tuner(options, db_url)
        _print_header(options, dashboard, db_url)
        signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
        try:
            with LiveReport(
                db_url, options.name, options.report_dir, every_s=options.report_every_s
            ):
                results = tuner.fit()  # one Ctrl-C (or SIGTERM) ends it gracefully
        except Exception:
            set_sweep_status(db_url, options.name, "failed")
            raise
        interrupted = sweep_row(db_url, options.name)["status"] == "interrupted"
        if not interrupted:
            evaluate_at_end(options, db_url)
            interrupted = not confirm_at_end(options, db_url)
        print(leaderboard(db_url, options.name))
        print(f"report      {write_final_report(options, db_url)}")
        if interrupted:
            print(f"interrupted: continue with --resume --name {options.name}", file=sys.stderr)
            return 130
        return 1 if results.num_errors and results.num_errors == len(results) else 0
    except KeyboardInterrupt:  # a second Ctrl-C, or one before Tune took over
        set_sweep_status(db_url, options.name, "interrupted")
        print(f"interrupted: continue with --resume --name {options.name}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        ray.shutdown()  # each sweep of sweeps/dqn_vs_ppo.py gets its own Ray session


def write_final_report(options: Options, db_url: str) -> str:
    """The report with everything the sweep recorded; a problem with it never fails the sweep."""

    try:
        return str(write_report(db_url, options.name, options.report_dir))
    except (ReportError, StoreError, OSError) as err:
        return f"(not written: {err})"


def confirm_at_end(options: Options, db_url: str) -> bool:
    """The confirm stage (``--confirm-top``/``--confirm-seeds``); False if it was interrupted."""

    if not (options.confirm_top and options.confirm_seeds):
        return True
    try:
        with LiveReport(db_url, options.name, options.report_dir, every_s=options.report_every_s):
            return run_confirm(
                options, db_url, top=options.confirm_top, seeds=options.confirm_seeds
            )
    except ConfirmError as err:  # e.g. no trial reported a metric: nothing to confirm
        print(f"confirm     skipped: {err}", file=sys.stderr)
        return True


def evaluate_at_end(options: Options, db_url: str) -> None:
    """Play the best checkpoint (``--eval-episodes``), store the episodes, keep the video."""

    if not options.eval_episodes:
        return
    experiment = None if "://" in options.storage_path else Path(options.experiment_dir)
    for evaluation in evaluate_best(
        db_url,
        options.name,
        episodes=options.eval_episodes,
        sample=options.eval_sample,
        out_dir=options.report_dir,
        wandb_mode=options.wandb_mode,
        wandb_project=options.wandb_project,
        experiment_dir=experiment,
    ):
        print(evaluation.summary())


def _print_header(options: Options, dashboard: str, db_url: str) -> None:
    wandb = f"{options.wandb_mode}, project {options.wandb_project}"
    if options.wandb_mode != "disabled":
        wandb += f", run files in {options.experiment_dir}/<trial>/wandb"
    print(
        f"sweep       {options.name} ({options.sweep.algo}, {options.num_samples} trials, "
        f"{options.max_env_steps:,} env steps each)\n"
        f"dashboard   {dashboard}\n"
        f"database    {mask_url(db_url)}\n"
        f"report      {options.report_dir}/ (refreshed every "
        f"{options.report_every_s / 60:g} min; open the .html in a browser)\n"
        f"w&b         {wandb}"
        + (
            f"\n            upload later: wandb sync {options.experiment_dir}/*/wandb/offline-run-*"
            if options.wandb_mode == "offline"
            else ""
        )
        + f"\nscheduler   {options.schedule.describe(max_concurrent=options.max_concurrent)}"
    )


def main(sweep: Sweep, argv: list[str] | None = None) -> int:
    """Entry point of every sweep file: ``sys.exit(main(SWEEP))``."""
    try:
        return run(parse_options(sweep, argv))
    except (SweepError, CheckpointError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
