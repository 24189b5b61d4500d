"""A real two-node Ray cluster on this machine, started by cluster/local_cluster.sh.

The head and the worker node each offer 1 CPU, so a sweep with two concurrent 1-CPU trials must
use both nodes. Token authentication is on, the dashboard listens on 127.0.0.1 only, and the
worker node is started without ``MARIO_SWEEPS_DB_URL`` (the head gets a sentinel value, so the
test can tell the two apart). Jobs go through ``ray job submit`` exactly as a user's would.

Both nodes share this machine's IP, so "ran on both nodes" is checked with Ray node ids from
the state API, not with the ``node_ip`` columns of the results.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from tests.helpers import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.xdist_group("cluster")]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "cluster" / "local_cluster.sh"
HEAD_ONLY_DB_URL = "postgresql://sentinel@head-only.invalid/none"


def cluster_processes(state_dir: Path) -> list[int]:
    """PIDs of live processes whose command line names the cluster's own directory."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and f"{state_dir}/" in cmdline:
            pids.append(int(proc.name))
    return pids


def tail(done: subprocess.CompletedProcess, lines: int = 60) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


@dataclass
class LocalCluster:
    state_dir: Path
    env: dict[str, str]
    dashboard_port: int

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def client_env(self) -> dict[str, str]:
        """What `local_cluster.sh env` tells a user's shell: token auth, the cluster's token."""
        token_path = str(self.state_dir / "auth_token")
        return {**self.env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token_path}

    def script(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def state(self, resource: str, *filters: str) -> list[dict]:
        """`ray list RESOURCE` through the dashboard's state API, as JSON."""
        args = ["ray", "list", resource, "--address", self.dashboard_url, "--format", "json"]
        args += ["--detail", "--limit", "10000"]
        for f in filters:
            args += ["--filter", f]
        done = subprocess.run(
            args, env=self.client_env, capture_output=True, text=True, timeout=60, check=True
        )
        return json.loads(done.stdout)


def make_cluster(state_dir: Path) -> LocalCluster:
    dashboard_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # The venv's `ray` and `python` first, even when pytest runs without an activated venv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        MARIO_CLUSTER_DIR=str(state_dir),
        MARIO_CLUSTER_PORT=str(free_port()),
        MARIO_CLUSTER_DASHBOARD_PORT=str(dashboard_port),
        MARIO_CLUSTER_HEAD_CPUS="1",
        MARIO_CLUSTER_WORKER_CPUS="1",
        MARIO_SWEEPS_DB_URL=HEAD_ONLY_DB_URL,
        WANDB_MODE="disabled",
    )
    return LocalCluster(state_dir=state_dir, env=env, dashboard_port=dashboard_port)


@pytest.fixture
def state_dir():
    # Short and under /tmp: Ray's unix socket paths must fit in 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="mr-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def local_cluster():
    """Head + one worker node for the module; always torn down, and checked to be gone."""
    path = Path(tempfile.mkdtemp(prefix="mr-", dir="/tmp"))
    cluster = make_cluster(path)
    try:
        up = cluster.script("up", "1", timeout=240)
        assert up.returncode == 0, tail(up)
        yield cluster
    finally:
        down = cluster.script("down", timeout=120)
        leftover = cluster_processes(path)
        shutil.rmtree(path, ignore_errors=True)
        assert down.returncode == 0, tail(down)
        assert not leftover, f"processes left behind by down: {leftover}"


# Defined first so that its own cluster runs before the module's cluster starts.
def test_run_tears_the_cluster_down_after_a_failing_job(state_dir):
    cluster = make_cluster(state_dir)
    done = cluster.script("run", "1", "--", "python", "-c", "raise SystemExit(3)", timeout=300)
    assert done.returncode != 0, tail(done)
    assert "cluster down" in done.stderr, tail(done)
    assert cluster_processes(state_dir) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", cluster.dashboard_port), timeout=3).close()


def test_dashboard_answers_on_loopback_only(local_cluster):
    # Without a token the dashboard answers, with 401: it is listening on 127.0.0.1.
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"{local_cluster.dashboard_url}/api/version", timeout=10)
    assert answer.value.code == 401
    head = next(n for n in local_cluster.state("nodes") if n["is_head_node"])
    host_ip = head["node_ip"]
    if host_ip.startswith("127."):
        pytest.skip("this machine has no non-loopback address to probe")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host_ip, local_cluster.dashboard_port), timeout=3).close()


def test_job_api_rejects_clients_without_the_token(local_cluster):
    env = {k: v for k, v in local_cluster.client_env.items() if k != "RAY_AUTH_MODE"}
    done = subprocess.run(
        ["ray", "job", "submit", "--address", local_cluster.dashboard_url, "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Authentication required" in done.stdout + done.stderr


def test_worker_nodes_start_without_the_database_url(local_cluster):
    probe = (
        "import json, os, ray\n"
        "ray.init()\n"
        "@ray.remote(num_cpus=0)\n"
        "def where():\n"
        "    node = ray.get_runtime_context().get_node_id()\n"
        "    return node, os.environ.get('MARIO_SWEEPS_DB_URL')\n"
        "head = ray.get(where.options(resources={'node_head': 0.01}).remote())\n"
        "worker = ray.get(where.options(resources={'node_worker1': 0.01}).remote())\n"
        "print('PROBE ' + json.dumps({'head': head, 'worker': worker}))\n"
    )
    done = local_cluster.script("submit", "--", "python", "-c", probe, timeout=180)
    assert done.returncode == 0, tail(done)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("PROBE "))
    found = json.loads(line.removeprefix("PROBE "))
    assert found["head"][0] != found["worker"][0]
    assert found["head"][1] == HEAD_ONLY_DB_URL
    assert found["worker"][1] is None


@pytest.mark.timeout(1800)
def test_sweep_runs_trials_on_both_nodes_and_stores_their_rows(
    local_cluster, fresh_db_url, tmp_path
):
    submission_id = f"cluster-sweep-{uuid.uuid4().hex[:8]}"
    name = f"cluster_smoke_{uuid.uuid4().hex[:8]}"
    sweep = ["python", "sweeps/ppo_lr_entropy.py", "--smoke", "--db-url", fresh_db_url]
    sweep += ["--num-samples", "2", "--max-concurrent", "2", "--wandb-mode", "disabled"]
    sweep += ["--confirm-top", "0", "--max-env-steps", "256"]  # one iteration per trial
    sweep += ["--name", name, "--storage-path", str(tmp_path / "ray_results")]
    done = local_cluster.script(
        "submit", "--submission-id", submission_id, "--", *sweep, timeout=1500
    )
    assert done.returncode == 0, tail(done)

    (job,) = local_cluster.state("jobs", f"submission_id={submission_id}")
    assert job["status"] == "SUCCEEDED", job.get("message")
    alive = {n["node_id"] for n in local_cluster.state("nodes", "state=ALIVE")}
    assert len(alive) == 2
    # Every actor the sweep's driver created: trial actors and their env runners.
    actors = local_cluster.state("actors", f"job_id={job['job_id']}")
    assert {a["node_id"] for a in actors} == alive, [
        (a["class_name"], a["node_id"]) for a in actors
    ]

    with psycopg2.connect(fresh_db_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM mario_sweeps.trials t"
            " JOIN mario_sweeps.sweeps s ON s.id = t.sweep_id WHERE s.name = %s",
            (name,),
        )
        assert cur.fetchone()[0] == 2
        cur.execute(
            "SELECT count(DISTINCT i.trial_id), count(*) FROM mario_sweeps.iterations i"
            " JOIN mario_sweeps.sweeps s ON s.id = i.sweep_id WHERE s.name = %s",
            (name,),
        )
        trials_with_rows, iterations = cur.fetchone()
    conn.close()
    assert trials_with_rows == 2
    assert iterations >= 2
