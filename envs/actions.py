"""Discrete action sets: each is a list of joypad button combinations, index = action.

SMB1 and The Lost Levels share the classic sets (index 1 is ``right`` in all three). SMB2 USA has
no run-button semantics — B picks up and throws, down charges the super jump, up opens doors — and
SMB3 needs B held to fill the P-meter before A makes Mario fly, so each gets a set of its own.
"""

from gym_super_mario_bros.actions import COMPLEX_MOVEMENT, RIGHT_ONLY, SIMPLE_MOVEMENT
from nes_py.wrappers import JoypadSpace

__all__ = ["ACTION_SETS", "DEFAULT_ACTION_SET", "action_bytes"]

SMB2_USA_MOVEMENT = [
    ["NOOP"],
    ["right"],
    ["right", "A"],
    ["left"],
    ["left", "A"],
    ["A"],
    ["B"],
    ["down"],
    ["up"],
]

SMB3_MOVEMENT = [
    ["NOOP"],
    ["right"],
    ["right", "A"],
    ["right", "B"],
    ["right", "A", "B"],
    ["A"],
    ["A", "B"],
    ["left"],
    ["left", "A"],
    ["down"],
]

ACTION_SETS: dict[str, list[list[str]]] = {
    "right_only": RIGHT_ONLY,
    "simple": SIMPLE_MOVEMENT,
    "complex": COMPLEX_MOVEMENT,
    "smb2_usa": SMB2_USA_MOVEMENT,
    "smb3": SMB3_MOVEMENT,
}

DEFAULT_ACTION_SET = {
    "smb1": "simple",
    "lost_levels": "simple",
    "smb2_usa": "smb2_usa",
    "smb3": "smb3",
}


def action_bytes(action_set: str) -> list[int]:
    """The NES controller byte of each action, so the env can skip JoypadSpace's dict lookup."""
    buttons = JoypadSpace._button_map
    return [sum(buttons[b] for b in combo) for combo in ACTION_SETS[action_set]]
