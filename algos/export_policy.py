"""Export the playable part of a checkpoint, small enough to ship in a repository.

    python -m algos.export_policy CHECKPOINT DEST

``DEST`` gets the algorithm's config and the policy module's weights in float16 (a PPO checkpoint's
39 MB become 6.7 MB): everything ``python -m algos.evaluate DEST`` needs, nothing to train on
(no optimizer state). The pretrained agent in ``algos/pretrained`` was made this way.
"""

import os
import sys

from algos.checkpoints import CheckpointError, export_policy


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or any(a.startswith("-") for a in args):
        print("usage: python -m algos.export_policy CHECKPOINT DEST", file=sys.stderr)
        return 2
    try:
        dest = export_policy(*args)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"exported the policy of {args[0]} to {os.fspath(dest)} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
