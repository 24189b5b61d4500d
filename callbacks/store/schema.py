"""Schema ``mario_sweeps`` and its versioned migrations (plain SQL, applied in order).

Our tables live in their own PostgreSQL schema so they never collide with Optuna's tables
(``studies``, ``trials``, ...), which Optuna creates in ``public`` of the same database.
``mario_sweeps.schema_version`` holds one row per applied version; :func:`migrate` applies the
missing steps, each in its own transaction, under an advisory lock so two drivers starting at the
same time cannot both migrate. To change the schema, append a step to :data:`MIGRATIONS` (never
edit a released one) and add a test that upgrades a database built at the previous version.
"""

import psycopg2

from callbacks.store.connection import connect, connect_check, mask_url
from callbacks.store.errors import StoreError, one_line

__all__ = [
    "MIGRATIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "current_version",
    "migrate",
    "prepare_database",
]

SCHEMA = "mario_sweeps"

# Any constant works; it only has to be the same in every driver (pg_advisory_lock takes a bigint).
_MIGRATION_LOCK_KEY = 0x6D6172696F_5357

_V1_TABLES = """
CREATE SCHEMA IF NOT EXISTS mario_sweeps;

CREATE TABLE mario_sweeps.schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mario_sweeps.sweeps (
    id            serial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    algo          text NOT NULL,
    search_space  jsonb NOT NULL DEFAULT '{}',
    metric        text NOT NULL,
    mode          text NOT NULL CHECK (mode IN ('max', 'min')),
    scheduler     jsonb,
    code_version  text,
    ray_address   text,
    command       text,
    status        text NOT NULL
                  CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);

CREATE TABLE mario_sweeps.trials (
    sweep_id         integer NOT NULL REFERENCES mario_sweeps.sweeps (id) ON DELETE CASCADE,
    trial_id         text NOT NULL,
    params           jsonb,
    status           text,
    stop_reason      text,
    best_metric      double precision,
    best_checkpoint  text,
    error            text,
    node_ip          text,
    last_env_steps   bigint,
    started_at       timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (sweep_id, trial_id)
);

CREATE TABLE mario_sweeps.iterations (
    sweep_id             integer NOT NULL,
    trial_id             text NOT NULL,
    training_iteration   integer NOT NULL,
    env_steps_lifetime   bigint,
    metric               double precision,
    return_smoothed      double precision,
    x_pos_smoothed       double precision,
    episode_return_mean  double precision,
    episode_return_max   double precision,
    x_pos_mean           double precision,
    x_pos_max            double precision,
    flag_rate            double precision,
    episodes             integer,
    loss                 double precision,
    entropy              double precision,
    kl                   double precision,
    time_total_s         double precision,
    node_ip              text,
    result               jsonb,
    PRIMARY KEY (sweep_id, trial_id, training_iteration),
    FOREIGN KEY (sweep_id, trial_id)
        REFERENCES mario_sweeps.trials (sweep_id, trial_id) ON DELETE CASCADE
);

CREATE TABLE mario_sweeps.episodes (
    sweep_id            integer NOT NULL,
    trial_id            text NOT NULL,
    episode_id          text NOT NULL,
    training_iteration  integer,
    env_runner          integer,
    env_index           integer,
    episode_return      double precision,
    length              integer,
    x_pos               integer,
    x_pos_max           integer,
    flag_get            boolean,
    score               integer,
    coins               integer,
    time_left           integer,
    world               integer,
    stage               integer,
    life                integer,
    status              text,
    PRIMARY KEY (sweep_id, trial_id, episode_id),
    FOREIGN KEY (sweep_id, trial_id)
        REFERENCES mario_sweeps.trials (sweep_id, trial_id) ON DELETE CASCADE
);
"""

# The multi-game work: an episode says which game and task it came from. The index serves
# "episodes of this trial, in iteration order" (the primary key orders by episode id instead).
_V2_GAME_AND_TASK = """
ALTER TABLE mario_sweeps.episodes ADD COLUMN game text, ADD COLUMN task_id text;
CREATE INDEX episodes_trial_iteration
    ON mario_sweeps.episodes (sweep_id, trial_id, training_iteration);
"""

# The end-of-sweep evaluation of the best checkpoint: one row per played episode, greedy and
# sampled apart, so a report can show what the agent does beside what it did in training.
_V3_EVALUATIONS = """
CREATE TABLE mario_sweeps.evaluations (
    sweep_id        integer NOT NULL,
    trial_id        text NOT NULL,
    checkpoint      text NOT NULL,
    policy          text NOT NULL CHECK (policy IN ('greedy', 'sample')),
    episode         integer NOT NULL,
    task_id         text,
    episode_return  double precision,
    x_pos           integer,
    flag_get        boolean,
    length          integer,
    video           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sweep_id, trial_id, checkpoint, policy, episode),
    FOREIGN KEY (sweep_id, trial_id)
        REFERENCES mario_sweeps.trials (sweep_id, trial_id) ON DELETE CASCADE
);
"""

# The confirm stage (sweeps.confirm): the best configs re-run over fresh seeds. A trial says which
# stage ran it, its seed, and the search trial whose config it repeats; ``final_metric`` is the
# score the statistics use (sweeps.stats.FINAL_METRIC); ``settings`` holds what every trial of the
# sweep was built from, so a later ``python -m sweeps.confirm NAME`` can build the same trials.
_V4_CONFIRM = """
ALTER TABLE mario_sweeps.sweeps ADD COLUMN settings jsonb;
ALTER TABLE mario_sweeps.trials
    ADD COLUMN stage text NOT NULL DEFAULT 'search' CHECK (stage IN ('search', 'confirm')),
    ADD COLUMN seed bigint,
    ADD COLUMN repeats text,
    ADD COLUMN final_metric double precision;
"""

# Population-based training (sweeps.pbt): every exploit (a member copied a donor's checkpoint,
# then explored new values) and every collapse a PBT sweep recorded instead of stopping the
# member (``metric`` fell ``peak`` * drop_fraction below its peak). ``training_iteration`` is the
# member's stored iteration (its own timeline, see PostgresCallback).
_V5_LINEAGE = """
CREATE TABLE mario_sweeps.lineage (
    sweep_id            integer NOT NULL,
    trial_id            text NOT NULL,
    training_iteration  integer NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('exploit', 'collapse')),
    env_steps           bigint,
    donor               text,
    donor_iteration     integer,
    donor_env_steps     bigint,
    checkpoint          text,
    metric              double precision,
    donor_metric        double precision,
    peak                double precision,
    old_params          jsonb,
    donor_params        jsonb,
    new_params          jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sweep_id, trial_id, training_iteration, kind),
    FOREIGN KEY (sweep_id, trial_id)
        REFERENCES mario_sweeps.trials (sweep_id, trial_id) ON DELETE CASCADE
);
"""

# (version, SQL) in order; version N's SQL upgrades a database at version N-1.
# How an evaluation played (algos.evaluate.Protocol.describe()): greedy episodes on the
# deterministic emulator replay one episode, so a figure means little without its protocol.
_V6_EVALUATION_PROTOCOL = """
ALTER TABLE mario_sweeps.evaluations ADD COLUMN protocol text;
"""

# Evaluation during training (callbacks.periodic_evaluation): when a checkpoint was played, in
# the trial's env steps and stored iteration, so a report draws evaluations on learning curves
# and a replayed iteration's evaluation is rewound with it (NULL for an evaluation after
# training). The key tells the two apart: the end-of-sweep evaluation may play a checkpoint that
# was also played during training, and must not overwrite that evaluation.
_V7_EVALUATION_WHEN = """
ALTER TABLE mario_sweeps.evaluations
    ADD COLUMN env_steps bigint,
    ADD COLUMN training_iteration integer,
    ADD COLUMN during_training boolean
        GENERATED ALWAYS AS (training_iteration IS NOT NULL) STORED;
ALTER TABLE mario_sweeps.evaluations
    DROP CONSTRAINT evaluations_pkey,
    ADD PRIMARY KEY (sweep_id, trial_id, checkpoint, policy, episode, during_training);
"""

# Imitation (sweeps/bc_ppo.py): the demonstration episodes a sweep cloned (one row per recorded
# episode: who played it, where it got, the Parquet file) and its BC run, one row per iteration
# (policy loss; ``checkpoint`` where a trial may start from it). BC costs no env steps; a trial's
# ``params.bc_iterations`` says which of these iterations it started from.
_V8_IMITATION = """
CREATE TABLE mario_sweeps.demonstrations (
    sweep_id        integer NOT NULL REFERENCES mario_sweeps.sweeps (id) ON DELETE CASCADE,
    eps_id          text NOT NULL,
    source          text NOT NULL,
    task_id         text,
    steps           integer NOT NULL,
    episode_return  double precision,
    x_pos           integer,
    flag_get        boolean,
    path            text NOT NULL,
    PRIMARY KEY (sweep_id, eps_id)
);
CREATE TABLE mario_sweeps.bc_iterations (
    sweep_id     integer NOT NULL REFERENCES mario_sweeps.sweeps (id) ON DELETE CASCADE,
    iteration    integer NOT NULL,
    policy_loss  double precision,
    checkpoint   text,
    PRIMARY KEY (sweep_id, iteration)
);
"""

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, _V1_TABLES),
    (2, _V2_GAME_AND_TASK),
    (3, _V3_EVALUATIONS),
    (4, _V4_CONFIRM),
    (5, _V5_LINEAGE),
    (6, _V6_EVALUATION_PROTOCOL),
    (7, _V7_EVALUATION_WHEN),
    (8, _V8_IMITATION),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def current_version(conn: "psycopg2.extensions.connection") -> int:
    """The database's schema version (0 for a database we have never touched)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('mario_sweeps.schema_version')")
        if cur.fetchone()[0] is None:
            return 0
        cur.execute("SELECT coalesce(max(version), 0) FROM mario_sweeps.schema_version")
        return cur.fetchone()[0]


def migrate(conn: "psycopg2.extensions.connection", *, target: int = SCHEMA_VERSION) -> int:
    """Upgrade the database behind ``conn`` in place to ``target`` and return its version.

    ``conn`` must not be inside a transaction. Safe to call on every start: when the database is
    already current it only takes and releases the lock. Refuses a database newer than this code.
    """
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        try:
            version = current_version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the results database is at schema version {version}, newer than this "
                    f"code's {SCHEMA_VERSION}; update mario-sweeps before using it"
                )
            for step, statements in MIGRATIONS:
                if version < step <= target:
                    with conn, conn.cursor() as cur:
                        cur.execute(statements)
                        cur.execute(
                            "INSERT INTO mario_sweeps.schema_version (version) VALUES (%s)",
                            (step,),
                        )
                    version = step
            return version
        finally:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
    except psycopg2.Error as exc:
        raise StoreError(f"migrating the results schema failed: {one_line(exc)}") from exc


def prepare_database(url: str, *, password: str | None = None) -> int:
    """Check the URL can connect, bring the schema up to date, and return the schema version.

    Meant for the sweep runner's start, before Ray starts: every problem is a one-line StoreError.
    """
    connect_check(url, password=password)
    conn = connect(url, password=password)
    try:
        return migrate(conn)
    except StoreError as exc:
        raise StoreError(f"{exc} (database {mask_url(url)})") from None
    finally:
        conn.close()
