"""`make run` on the embedded default: set-up, the printed login, 500 leads, both servers, Ctrl-C.

It runs the real Makefile target with DATABASE_URL and REDIS_URL unset, on an embedded PostgreSQL
server of its own (a fresh data directory, not the one the tests run on).
"""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import psycopg
import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_login_page(url: str, process: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make run exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a local URL
                return response.status
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def processes_in_group(pgid: int) -> list[str]:
    result = subprocess.run(
        ["ps", "-o", "pid=,pgid=,args=", "-e"], capture_output=True, text=True, check=True
    )
    return [line for line in result.stdout.splitlines() if line.split()[1] == str(pgid)]


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs; an orphaned postmaster may stay a zombie until init reaps it."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_make_run_serves_the_admin_with_the_printed_login_and_500_leads_and_stops_on_ctrl_c(
    tmp_path, embedded_pgdata
):
    port = free_port()
    pgdata = embedded_pgdata
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "Q_BROKER", "DJANGO_SETTINGS_MODULE"}
        and not key.startswith(("COV_", "PYTEST_"))
    }
    env.update(
        EMBEDDED_PGDATA=str(pgdata),
        DEMO_ADMIN_PASSWORD="demo-pass-for-the-test",
        MEDIA_ROOT=str(tmp_path / "media"),
        LOG_LEVEL="INFO",  # the cluster says when it is running
    )
    output = tmp_path / "make-run.log"
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=BASE_DIR,
        env=env,
        stdout=output.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # A terminal's job does not ignore SIGINT, as a shell's background job does (this test's may).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert wait_for_login_page(f"http://127.0.0.1:{port}/admin/login/", process) == 200
        printed = output.read_text()
        assert f"http://127.0.0.1:{port}/admin/" in printed
        assert re.search(r"username: admin\b", printed)
        assert "password: demo-pass-for-the-test" in printed
        server = (pgdata / "postmaster.pid").read_text().splitlines()
        assert server[5].strip() == ""  # listen_addresses: no TCP port, the Unix socket only
        with psycopg.connect(
            host=server[4].strip(), port=server[3].strip(), user="postgres", dbname="leadgen"
        ) as db:
            assert db.execute("SELECT count(*) FROM leads_lead").fetchone() == (500,)
        running = "\n".join(processes_in_group(process.pid))
        assert "daphne" in running and "qcluster" in running
        # Ctrl-C once the workers are up (django-q2 can hang when stopped halfway through starting).
        deadline = time.monotonic() + 60
        while "running." not in output.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert re.search(r"Q Cluster \S+ \[leadgen\] running\.", output.read_text())

        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground process group
        process.wait(timeout=30)
        deadline = time.monotonic() + 15
        while processes_in_group(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_in_group(process.pid) == []
        # The server runs in a session of its own; this make run started it, so it stopped it.
        assert "Embedded PostgreSQL stopped" in output.read_text()
        assert not (pgdata / "postmaster.pid").exists()
        assert not pid_alive(int(server[0]))
    finally:
        if process.poll() is None or processes_in_group(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
