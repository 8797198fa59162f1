"""The database is PostgreSQL; without DATABASE_URL, the embedded server, shared, held and stopped.

The start/reuse/stop tests run servers of their own (`embedded_pgdata`).
"""

import os
import subprocess

import environ
import psutil
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from leadgen import embedded_db


def postmaster_pid(pgdata) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def alive(pid: int) -> bool:
    """Whether process `pid` runs; an orphaned postmaster may stay a zombie until init reaps it."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def query(db: dict, sql: str):
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else None


@pytest.mark.django_db
def test_the_database_is_postgresql_and_without_database_url_the_embedded_server():
    assert connection.vendor == "postgresql"
    if settings.DATABASE_URL:
        return
    with connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        assert cursor.fetchone() == (str(settings.EMBEDDED_PGDATA),)
        cursor.execute("SHOW server_version_num")
        assert int(cursor.fetchone()[0]) // 10000 == 18
        cursor.execute("SHOW listen_addresses")
        assert cursor.fetchone() == ("",)
        cursor.execute("SHOW unix_socket_directories")
        assert cursor.fetchone() == (connection.settings_dict["HOST"],)


@pytest.mark.slow
def test_start_reuse_stop_and_start_again_with_the_data_kept(embedded_pgdata):
    pgdata = embedded_pgdata

    db = embedded_db.ensure_running(pgdata)
    assert db == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "leadgen",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": str(pgdata.resolve()),
        "PORT": "5432",
    }
    first = postmaster_pid(pgdata)
    query(db, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")

    assert embedded_db.ensure_running(pgdata) == db
    assert postmaster_pid(pgdata) == first

    assert embedded_db.stop(pgdata) is True
    assert not alive(first)
    assert not (pgdata / "postmaster.pid").exists()
    assert embedded_db.stop(pgdata) is False

    assert embedded_db.ensure_running(pgdata) == db
    assert postmaster_pid(pgdata) != first
    assert query(db, "SELECT n FROM kept") == [(7,)]


@pytest.mark.slow
def test_the_last_holder_to_release_the_server_stops_it_and_a_server_nobody_held_stays_up(
    embedded_pgdata, monkeypatch, capsys
):
    pgdata = embedded_pgdata
    monkeypatch.setenv("EMBEDDED_PGDATA", str(pgdata))
    other = subprocess.Popen(["sleep", "60"])  # a second make target, still running
    try:
        assert embedded_db.main(["start", "--holder", str(os.getpid())]) == 0
        server = postmaster_pid(pgdata)
        assert embedded_db.main(["start", "--holder", str(other.pid)]) == 0
        assert postmaster_pid(pgdata) == server

        embedded_db.main(["release", str(os.getpid())])
        assert alive(server)
        embedded_db.main(["release", str(other.pid)])
        assert not alive(server)
        assert embedded_db.main(["status"]) == 3

        embedded_db.ensure_running(pgdata)  # a bare manage.py or pytest starts it: nobody holds it
        server = postmaster_pid(pgdata)
        embedded_db.main(["start", "--holder", str(os.getpid())])
        embedded_db.main(["release", str(os.getpid())])
        assert alive(server)
        assert embedded_db.main(["status"]) == 0

        embedded_db.main(["reset"])
        assert not alive(server)
        assert not pgdata.exists()
    finally:
        other.kill()
        other.wait()
    printed = capsys.readouterr().out
    assert printed.count("Embedded PostgreSQL stopped") == 1
    assert f"Embedded PostgreSQL: {pgdata} deleted" in printed


@pytest.mark.slow
def test_a_dead_holder_does_not_keep_the_server_up(embedded_pgdata, monkeypatch):
    monkeypatch.setenv("EMBEDDED_PGDATA", str(embedded_pgdata))
    gone = subprocess.Popen(["true"])
    gone.wait()

    embedded_db.main(["start", "--holder", str(gone.pid)])
    embedded_db.main(["start", "--holder", str(os.getpid())])
    server = postmaster_pid(embedded_pgdata)
    embedded_db.main(["release", str(os.getpid())])

    assert not alive(server)


@pytest.mark.parametrize(
    "db",
    [
        {"USER": "postgres", "PASSWORD": "", "HOST": "/work/My Project/.pgdata", "PORT": "5432", "NAME": "t"},
        {"USER": "postgres", "PASSWORD": "", "HOST": "/tmp/a+b", "PORT": "", "NAME": "test_leadgen"},
        {"USER": "app", "PASSWORD": "p@ss:w/rd", "HOST": "db.internal", "PORT": "6432", "NAME": "leadgen"},
        {"USER": "app", "PASSWORD": "", "HOST": "::1", "PORT": "5432", "NAME": "leadgen"},
    ],
)
def test_database_url_reads_back_as_the_same_database(db):
    url = embedded_db.database_url({**db, "ENGINE": "django.db.backends.postgresql", "OPTIONS": {}})

    parsed = environ.Env.db_url_config(url)

    assert {key: str(parsed[key]) for key in db} == db
    assert parsed["ENGINE"] == "django.db.backends.postgresql"


def test_database_url_of_an_empty_host_is_the_local_tcp_server():
    url = embedded_db.database_url({"USER": "postgres", "PASSWORD": "", "HOST": "", "PORT": "", "NAME": "x"})

    assert url == "postgres://postgres@127.0.0.1/x"
