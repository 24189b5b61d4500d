"""Fetch the sweep database URL from a cloud secret manager onto the head node.

Run by the cluster launcher configs (cluster/aws.yaml, cluster/gcp.yaml) in the head's setup::

    python cluster/db_url_secret.py aws --secret mario-sweeps/db-url --region us-west-2
    python cluster/db_url_secret.py gcp --secret mario-sweeps-db-url

If the secret exists, its URL is written (mode 600) to ``~/.mario-sweeps/db_url``, which the
head's start command exports as ``MARIO_SWEEPS_DB_URL``. A password in the URL is moved to
``~/.pgpass`` (libpq reads it there) so that it never reaches an environment variable, the
job's command line, Tune's ``tuner.pkl`` or Optuna's pickled storage. If the secret does not
exist, any earlier URL file is removed and the sweep falls back to the head's embedded
PostgreSQL. Any other failure (no permission, no network) exits non-zero, so `ray up` stops
instead of silently using the wrong database.
"""

import argparse
import base64
import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from callbacks.store.connection import split_password, validate_db_url
from callbacks.store.errors import StoreError

__all__ = ["pgpass_line", "main"]

DEFAULT_STATE_DIR = Path("~/.mario-sweeps")
DEFAULT_PGPASS = Path("~/.pgpass")


def pgpass_line(url: str, password: str) -> str:
    """The ``~/.pgpass`` line (host:port:database:user:password) that serves ``url``.

    >>> pgpass_line("postgresql://sweeps@db.internal/results", "a:b")
    'db.internal:5432:results:sweeps:a\\\\:b'
    """
    parts = urlsplit(url)
    user = unquote(parts.username or "")
    database = unquote(parts.path.lstrip("/")) or user
    fields = [parts.hostname or "localhost", str(parts.port or 5432), database, user, password]
    return ":".join(f.replace("\\", "\\\\").replace(":", "\\:") for f in fields)


def _fetch_aws(secret: str, region: str | None) -> str | None:
    import boto3

    client = boto3.client("secretsmanager", region_name=region)
    try:
        return client.get_secret_value(SecretId=secret)["SecretString"]
    except client.exceptions.ResourceNotFoundException:
        return None


def _fetch_gcp(secret: str, project: str | None) -> str | None:
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, default_project = google.auth.default(
        scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    project = project or default_project
    url = (
        f"https://secretmanager.googleapis.com/v1/projects/{project}/secrets/{secret}"
        "/versions/latest:access"
    )
    response = AuthorizedSession(credentials).get(url, timeout=30)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return base64.b64decode(response.json()["payload"]["data"]).decode()


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _store_password(pgpass: Path, line: str) -> None:
    """Add ``line`` to ``pgpass``, replacing an earlier line for the same host/port/db/user."""
    key = line.rsplit(":", 1)[0] + ":"
    kept = []
    if pgpass.exists():
        kept = [old for old in pgpass.read_text().splitlines() if not old.startswith(key)]
    _write_private(pgpass, "\n".join([*kept, line]) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cloud", choices=["aws", "gcp"], help="which secret manager to ask")
    parser.add_argument("--secret", required=True, help="secret name (AWS id or GCP name)")
    parser.add_argument("--region", help="AWS region of the secret")
    parser.add_argument("--project", help="GCP project (default: the VM's project)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--pgpass", type=Path, default=DEFAULT_PGPASS)
    args = parser.parse_args(argv)

    url_file = args.state_dir.expanduser() / "db_url"
    if args.cloud == "aws":
        value = _fetch_aws(args.secret, args.region)
    else:
        value = _fetch_gcp(args.secret, args.project)

    if value is None or not value.strip():
        url_file.unlink(missing_ok=True)
        print(f"no secret {args.secret!r}: the sweep uses the head's embedded PostgreSQL")
        return 0
    try:
        url, password = split_password(validate_db_url(value.strip()))
    except StoreError as err:
        print(f"secret {args.secret!r}: {err}", file=sys.stderr)
        return 1
    if password is not None:
        _store_password(args.pgpass.expanduser(), pgpass_line(url, password))
    _write_private(url_file, url)
    print(f"database URL from secret {args.secret!r} written to {url_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
