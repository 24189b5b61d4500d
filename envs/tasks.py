"""Which Mario tasks exist: the 112 tasks gym-super-mario-bros 9.1 registers, by game and stage.

Users name a task the way they think of it — a registered id (``"SuperMarioBros3-1-1-v0"``) or a
game with a world and stage (``game="lost_levels", world="A", stage=1``). Everything here resolves
those to canonical env ids and fails with one line that names the bad value and what is allowed.
"""

from functools import cache

import gym_super_mario_bros

__all__ = ["GAMES", "TaskError", "resolve_task", "task_info", "task_ids_for_game"]

GAMES = ("smb1", "lost_levels", "smb2_usa", "smb3")


class TaskError(ValueError):
    """A task, game, world or stage that no registered Mario env has."""


@cache
def _tasks_by_id() -> dict:
    """Every registered task by env id, aliases included (they resolve to their canonical id)."""
    return {t.env_id: t for t in gym_super_mario_bros.all_tasks(include_aliases=True)}


def task_info(env_id: str):
    """The package's ``MarioTask`` record for a canonical or alias env id."""
    try:
        task = _tasks_by_id()[env_id]
    except KeyError:
        raise TaskError(
            f"task={env_id!r} is not a registered Mario task; allowed: any id from "
            "gym_super_mario_bros.task_ids() (112 tasks, e.g. 'SuperMarioBros-1-1-v0', "
            "'SuperMarioBros2-A-1-v0', 'SuperMarioBros2USA-1-1-v0', 'SuperMarioBros3-1-1-v0')"
        ) from None
    return task


def task_ids_for_game(game: str) -> tuple[str, ...]:
    """Canonical single-stage task ids of one game, in registry order."""
    _check_game(game)
    return gym_super_mario_bros.task_ids(game_family=game, single_stage=True)


def _check_game(game: object) -> None:
    if game not in GAMES:
        raise TaskError(f"game={game!r} is not a Mario game; allowed: {', '.join(GAMES)}")


def _stage_tasks(game: str) -> dict:
    return {
        (t.world_label, t.stage): t
        for t in gym_super_mario_bros.all_tasks(game_family=game, single_stage=True)
    }


def resolve_task(*, game: str = "smb1", world: int | str = 1, stage: int = 1) -> str:
    """The canonical env id of ``game`` world ``world`` stage ``stage``.

    Worlds are numbers, or the labels the game prints (Lost Levels' ``"A"``..``"D"``); Lost
    Levels' numeric worlds 10-13 mean A-D, as the ROM counts them.
    """
    _check_game(game)
    stages = _stage_tasks(game)
    label = str(world)
    if game == "lost_levels" and isinstance(world, int) and 10 <= world <= 13:
        label = "ABCD"[world - 10]
    worlds = sorted({w for w, _ in stages}, key=lambda w: (len(w), w))
    if label not in worlds:
        raise TaskError(f"world={world!r} does not exist in {game}; allowed: {', '.join(worlds)}")
    task = stages.get((label, stage))
    if task is None or isinstance(stage, bool):
        allowed = sorted(s for w, s in stages if w == label)
        raise TaskError(
            f"stage={stage!r} does not exist in {game} world {label}; "
            f"allowed: {', '.join(map(str, allowed))}"
        )
    return task.env_id
