#!/usr/bin/env bash
# A multi-node Ray cluster on this one machine: one head and N worker nodes, each its own
# `ray start` with its own temp dir, CPU count and resources, token authentication on.
#
#   cluster/local_cluster.sh up [N_WORKERS]              start head + N workers (default 1)
#   cluster/local_cluster.sh submit [OPTS] -- CMD...     `ray job submit` CMD, stream its logs
#   cluster/local_cluster.sh run [N_WORKERS] -- CMD...   up, submit, and always down
#   cluster/local_cluster.sh status                      nodes and resources
#   cluster/local_cluster.sh env                         `export` lines for ray CLI / SDK use
#   cluster/local_cluster.sh down                        stop every node this script started
#
# OPTS are passed to `ray job submit` (e.g. --submission-id ID, --no-wait); the repo is the
# job's --working-dir. Run it from anywhere inside the venv that has this project installed.
#
# Token authentication (Ray 2.60, ray/_private/authentication/authentication_token_setup.py):
# every node and every client needs RAY_AUTH_MODE=token in its environment and the same token,
# which Ray reads from RAY_AUTH_TOKEN, else the file named by RAY_AUTH_TOKEN_PATH, else
# ~/.ray/auth_token. `up` writes a fresh 256-bit token to "$MARIO_CLUSTER_DIR/auth_token"
# (mode 600) and starts every node, and runs `ray job submit`, with RAY_AUTH_MODE=token and
# RAY_AUTH_TOKEN_PATH pointing at it. Processes the raylets spawn (the job driver, trial
# actors) inherit both. `ray job submit` only sends the token when RAY_AUTH_MODE=token is set
# in *its* environment; without it the dashboard answers 401.
#
# Worker nodes are started without MARIO_SWEEPS_DB_URL: only the job driver, which
# `ray job submit` places on the head node, writes to PostgreSQL.
#
# Settings (environment):
#   MARIO_CLUSTER_DIR             state, logs and per-node temp dirs (default /tmp/mario-ray-$UID;
#                                 keep it short: Ray's unix socket paths must fit in 107 bytes)
#   MARIO_CLUSTER_PORT            GCS port of the head (default 6379)
#   MARIO_CLUSTER_DASHBOARD_PORT  dashboard / job API port, bound to 127.0.0.1 (default 8265)
#   MARIO_CLUSTER_HEAD_CPUS       CPUs the head offers to tasks (default 1)
#   MARIO_CLUSTER_WORKER_CPUS     CPUs each worker node offers (default 1)
#   MARIO_CLUSTER_OBJECT_STORE_MB object store per node in MiB (default 512)
#   MARIO_CLUSTER_START_TIMEOUT   seconds to wait for the cluster to come up (default 90)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_DIR="${MARIO_CLUSTER_DIR:-/tmp/mario-ray-$(id -u)}"
GCS_PORT="${MARIO_CLUSTER_PORT:-6379}"
DASHBOARD_PORT="${MARIO_CLUSTER_DASHBOARD_PORT:-8265}"
HEAD_CPUS="${MARIO_CLUSTER_HEAD_CPUS:-1}"
WORKER_CPUS="${MARIO_CLUSTER_WORKER_CPUS:-1}"
OBJECT_STORE_MB="${MARIO_CLUSTER_OBJECT_STORE_MB:-512}"
START_TIMEOUT="${MARIO_CLUSTER_START_TIMEOUT:-90}"

TOKEN_FILE="$CLUSTER_DIR/auth_token"
PIDS_FILE="$CLUSTER_DIR/pids"
GCS_ADDRESS="127.0.0.1:$GCS_PORT"
DASHBOARD_URL="http://127.0.0.1:$DASHBOARD_PORT"

# The environment every node and client gets. RAY_AUTH_TOKEN is dropped so the token file is the
# one source of truth (a token in an env var would also be copied into every worker's
# environment); RAY_ADDRESS is dropped so nothing silently joins another cluster.
AUTH_ENV=(env -u RAY_AUTH_TOKEN -u RAY_ADDRESS RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$TOKEN_FILE")
# Set while a half-built or `run` cluster must be torn down when this script exits.
TEARDOWN_ON_EXIT=0
SUBMIT_PID=

log() { printf '[local_cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

with_auth() { "${AUTH_ENV[@]}" "$@"; }

is_running() {
    [[ -s "$PIDS_FILE" ]] || return 1
    local pid
    while read -r pid _; do
        kill -0 "$pid" 2>/dev/null && return 0
    done <"$PIDS_FILE"
    return 1
}

write_token() {
    # A caller-provided token (RAY_AUTH_TOKEN) is honoured by writing it to the cluster's file.
    (
        umask 077
        if [[ -n "${RAY_AUTH_TOKEN:-}" ]]; then
            printf '%s' "$RAY_AUTH_TOKEN" >"$TOKEN_FILE"
        else
            # Same generator as `ray get-auth-token --generate` (secrets.token_hex(32)), but
            # written to this cluster's file instead of overwriting ~/.ray/auth_token.
            python -c 'import secrets, sys; sys.stdout.write(secrets.token_hex(32))' >"$TOKEN_FILE"
        fi
    )
}

# start_node NAME ARGS...: `ray start --block` in its own session, so `down` can signal the node
# and everything it spawned as one process group. --block makes `ray start` stay in the
# foreground and, on SIGTERM, stop the node's raylet, GCS, dashboard and workers.
start_node() {
    local name="$1"
    shift
    local temp_dir="$CLUSTER_DIR/$name"
    mkdir -p "$temp_dir"
    setsid "$@" --temp-dir "$temp_dir" --block >"$CLUSTER_DIR/$name.log" 2>&1 </dev/null &
    echo "$! $name" >>"$PIDS_FILE"
}

wait_for_log() {
    local name="$1" deadline=$((SECONDS + START_TIMEOUT))
    until grep -q "Ray runtime started" "$CLUSTER_DIR/$name.log" 2>/dev/null; do
        local pid
        pid="$(awk -v n="$name" '$2 == n {print $1}' "$PIDS_FILE")"
        kill -0 "$pid" 2>/dev/null || {
            tail -n 30 "$CLUSTER_DIR/$name.log" >&2
            die "node $name exited during start-up (log: $CLUSTER_DIR/$name.log)"
        }
        ((SECONDS < deadline)) || die "node $name not up after ${START_TIMEOUT}s"
        sleep 1
    done
}

alive_nodes() {
    with_auth ray list nodes --address "$DASHBOARD_URL" --filter state=ALIVE --format json \
        --limit 1000 2>/dev/null | python -c 'import json, sys; print(len(json.load(sys.stdin)))'
}

wait_for_nodes() {
    local want="$1" deadline=$((SECONDS + START_TIMEOUT)) have=0
    while ((SECONDS < deadline)); do
        have="$(alive_nodes || echo 0)"
        ((have >= want)) && return 0
        sleep 2
    done
    die "only $have of $want nodes alive after ${START_TIMEOUT}s (logs: $CLUSTER_DIR/*.log)"
}

cmd_up() {
    local n_workers="${1:-1}"
    [[ "$n_workers" =~ ^[0-9]+$ ]] || die "N_WORKERS must be a non-negative integer, got '$n_workers'"
    command -v ray >/dev/null || die "ray not on PATH: activate the project's venv first"
    if is_running; then
        die "a cluster from $CLUSTER_DIR is already running; run '$0 down' first"
    fi
    mkdir -p "$CLUSTER_DIR"
    : >"$PIDS_FILE"
    write_token
    # A half-started cluster is torn down, not left behind (see on_exit).
    TEARDOWN_ON_EXIT=1

    local object_store=$((OBJECT_STORE_MB * 1024 * 1024))
    # Every node: no GPUs (nodes on one host would each claim the same GPU), random worker and
    # agent ports (the fixed defaults collide between nodes on one host), and a resource naming
    # the node so work can be pinned to it. Ray advertises the machine's routable IP even when
    # given 127.0.0.1 (services.resolve_ip_for_localhost), and GCS and raylets listen on all
    # interfaces; token auth guards those. Only the dashboard is bound to loopback.
    local common=(--num-gpus 0 --object-store-memory "$object_store"
        --min-worker-port 0 --max-worker-port 0 --dashboard-agent-listen-port 0
        --disable-usage-stats)

    log "starting head: GCS $GCS_ADDRESS, dashboard $DASHBOARD_URL, $HEAD_CPUS CPU"
    # The head keeps the caller's environment (MARIO_SWEEPS_DB_URL included): the job driver
    # runs here and may need it.
    start_node head "${AUTH_ENV[@]}" ray start --head --port "$GCS_PORT" \
        --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" --include-dashboard true \
        --num-cpus "$HEAD_CPUS" --resources '{"node_head": 1}' "${common[@]}"
    wait_for_log head

    local i
    for ((i = 1; i <= n_workers; i++)); do
        log "starting worker$i: $WORKER_CPUS CPU, without MARIO_SWEEPS_DB_URL"
        start_node "worker$i" env -u MARIO_SWEEPS_DB_URL -u PGPASSWORD \
            "${AUTH_ENV[@]}" ray start --address "$GCS_ADDRESS" --num-cpus "$WORKER_CPUS" \
            --resources "{\"node_worker$i\": 1}" "${common[@]}"
    done
    for ((i = 1; i <= n_workers; i++)); do wait_for_log "worker$i"; done
    wait_for_nodes $((n_workers + 1))
    TEARDOWN_ON_EXIT=0
    log "cluster up: $((n_workers + 1)) nodes; dashboard $DASHBOARD_URL (127.0.0.1 only)"
    log "token: $TOKEN_FILE; for your shell: eval \"\$($0 env)\""
}

cmd_env() {
    printf 'export RAY_AUTH_MODE=token\n'
    printf 'export RAY_AUTH_TOKEN_PATH=%q\n' "$TOKEN_FILE"
    printf 'export RAY_ADDRESS=%q  # ray.init() and `ray job` join this cluster\n' "$GCS_ADDRESS"
    printf 'export RAY_API_SERVER_ADDRESS=%q  # ray list / ray summary\n' "$DASHBOARD_URL"
    printf 'unset RAY_AUTH_TOKEN\n'
}

cmd_submit() {
    local opts=()
    while (($#)) && [[ "$1" != "--" ]]; do
        opts+=("$1")
        shift
    done
    [[ "${1:-}" == "--" ]] || die "usage: $0 submit [ray job submit options] -- COMMAND..."
    shift
    (($#)) || die "no command given after --"
    [[ -s "$TOKEN_FILE" ]] || die "no cluster token at $TOKEN_FILE: run '$0 up' first"
    cd "$REPO_ROOT"
    with_auth ray job submit --address "$DASHBOARD_URL" --working-dir . "${opts[@]}" -- "$@"
}

cmd_run() {
    local n_workers=1
    if (($#)) && [[ "$1" != "--" ]]; then
        n_workers="$1"
        shift
    fi
    local submission_id
    submission_id="local-$(date +%Y%m%d-%H%M%S)-$$"
    # Ctrl-C stops the job, not just the log stream; the cluster goes down in every case.
    trap 'stop_job "$submission_id"; exit 130' INT TERM
    cmd_up "$n_workers"
    TEARDOWN_ON_EXIT=1
    local rc=0
    # In the background so that `wait` returns as soon as a signal arrives (bash runs traps
    # only after a foreground child exits, and `ray job submit` would tail until the job ends).
    cmd_submit --submission-id "$submission_id" "$@" &
    SUBMIT_PID=$!
    wait "$SUBMIT_PID" || rc=$?
    SUBMIT_PID=
    with_auth ray job status --address "$DASHBOARD_URL" "$submission_id" || true
    return "$rc"
}

stop_job() {
    log "interrupted: stopping job $1"
    # Stopping the job also ends the log tail of `ray job submit`.
    with_auth ray job stop --address "$DASHBOARD_URL" "$1" >/dev/null 2>&1 || true
    if [[ -n "$SUBMIT_PID" ]]; then kill -TERM "$SUBMIT_PID" 2>/dev/null || true; fi
}

cmd_status() {
    is_running || die "no cluster running from $CLUSTER_DIR"
    with_auth ray status --address "$GCS_ADDRESS"
}

# Only processes this script started are signalled: the recorded `ray start` PIDs, their
# process groups, and any stray Ray process (a Ray binary or script, not e.g. a `tail` of a log)
# whose command line names this cluster's own directory.
cmd_down() {
    [[ -f "$PIDS_FILE" ]] || { log "nothing to stop"; return 0; }
    local pid name pids=()
    while read -r pid name; do
        [[ -n "$pid" ]] || continue
        pids+=("$pid")
        if kill -0 "$pid" 2>/dev/null; then
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done <"$PIDS_FILE"

    local deadline=$((SECONDS + 30))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
    done
    for pid in "${pids[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || true
    done

    local strays=() proc cmdline
    for proc in /proc/[0-9]*; do
        [[ "${proc#/proc/}" == "$$" ]] && continue
        cmdline="$(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null)" || continue
        [[ "$cmdline" == *"$CLUSTER_DIR/"* && "$cmdline" == *"/ray"[/\ ]* ]] &&
            strays+=("${proc#/proc/}")
    done
    if ((${#strays[@]})); then
        log "killing ${#strays[@]} leftover process(es) of this cluster: ${strays[*]}"
        kill -KILL "${strays[@]}" 2>/dev/null || true
    fi
    rm -f "$PIDS_FILE" "$TOKEN_FILE"
    log "cluster down (logs kept in $CLUSTER_DIR)"
}

on_exit() {
    local rc=$?
    if ((TEARDOWN_ON_EXIT)); then
        TEARDOWN_ON_EXIT=0
        cmd_down
    fi
    return "$rc"
}

main() {
    (($#)) || usage
    trap on_exit EXIT
    local cmd="$1"
    shift
    case "$cmd" in
        up) cmd_up "$@" ;;
        submit) cmd_submit "$@" ;;
        run) cmd_run "$@" ;;
        status) cmd_status ;;
        env) cmd_env ;;
        down) cmd_down ;;
        -h | --help | help) usage ;;
        *) log "unknown command '$cmd'"; usage ;;
    esac
}

main "$@"
