"""Peak memory of a whole sweep as users run it: a sweep script with its default trial settings.

Runs ``python SCRIPT ARGS...`` in a fresh state directory (embedded PostgreSQL, local Ray, offline
W&B) and polls, every ``--interval`` seconds, the memory of the script's whole process tree: the
driver, Ray's GCS, raylet, dashboard and workers (trials' main processes and env runners), and
PostgreSQL. Summed RSS counts shared pages (torch, Ray's object store) once per process; the sum
of PSS shares them out, so PSS is what the processes need together.

    python benchmarks/sweep_memory.py sweeps/ppo_lr_entropy.py --num-samples 2 --max-env-steps 20000
    python benchmarks/sweep_memory.py --json sweeps/dqn_lr_target.py --num-samples 2 ...
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def process_kind(process: psutil.Process) -> str:
    """A short name for what a process is: Ray actors by class, others by executable."""
    name = process.name()
    if name.startswith("ray::"):
        return name.split(".")[0]
    cmdline = process.cmdline()
    if name.startswith("python") and len(cmdline) > 1:
        return Path(cmdline[1]).name if not cmdline[1].startswith("-") else " ".join(cmdline[1:3])
    return name


def tree_memory(root: psutil.Process) -> dict:
    """Summed RSS and PSS of ``root`` and every descendant that is still alive, and PSS by kind."""
    rss = pss = count = 0
    by_kind: dict[str, int] = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            info = process.memory_full_info()
            kind = process_kind(process)
        except psutil.Error:
            continue
        rss, pss, count = rss + info.rss, pss + info.pss, count + 1
        by_kind[kind] = by_kind.get(kind, 0) + info.pss
    return {"rss_bytes": rss, "pss_bytes": pss, "processes": count, "pss_bytes_by_kind": by_kind}


def measure(command: list[str], interval: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="mario-sweeps-memory-") as state:
        env = {**os.environ, "MARIO_SWEEPS_STATE_DIR": state, "WANDB_MODE": "offline"}
        start = time.monotonic()
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        peak = {"rss_bytes": 0, "pss_bytes": 0, "processes": 0, "pss_bytes_by_kind": {}}
        stop = threading.Event()

        def poll() -> None:
            root = psutil.Process(child.pid)
            while not stop.is_set():
                now = tree_memory(root)
                if now["pss_bytes"] > peak["pss_bytes"]:
                    peak.update(now)
                peak["rss_bytes"] = max(peak["rss_bytes"], now["rss_bytes"])
                stop.wait(interval)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        output, _ = child.communicate()
        stop.set()
        poller.join()
    if child.returncode != 0:
        raise SystemExit(f"sweep_memory: {' '.join(command)} exited {child.returncode}")
    return {
        "command": command[1:],
        "wall_s": time.monotonic() - start,
        "peak_pss_bytes": peak["pss_bytes"],
        "processes_at_peak": peak["processes"],
        "peak_rss_sum_bytes": peak["rss_bytes"],
        "pss_bytes_by_kind_at_peak": dict(
            sorted(peak["pss_bytes_by_kind"].items(), key=lambda item: -item[1])
        ),
        "leaderboard": [line for line in output.splitlines() if line.startswith("leaderboard")],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    parser.add_argument("script", help="a sweep script, e.g. sweeps/ppo_lr_entropy.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the sweep script's arguments")
    args = parser.parse_args(argv)
    report = measure([sys.executable, args.script, *args.args], args.interval)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    gib = 2**30
    print(
        f"{' '.join(report['command'])}: peak {report['peak_pss_bytes'] / gib:.2f} GiB PSS over "
        f"{report['processes_at_peak']} processes (summed RSS peak "
        f"{report['peak_rss_sum_bytes'] / gib:.2f} GiB), {report['wall_s']:.0f} s"
    )
    for kind, size in report["pss_bytes_by_kind_at_peak"].items():
        print(f"  {size / 2**20:8.0f} MiB  {kind}")


if __name__ == "__main__":
    main()
