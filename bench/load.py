"""The web tier under load: wrk (Debian's `wrk`) through haproxy to one daphne and to two, while a batch runs.

    .venv/bin/python bench/load.py [--clients 200] [--seconds 60] [--mix-seconds 30] [--leads 5000]
                                   [--daphnes 1,2] [--label NAME]

Everything runs on loopback, on ports the OS picks, and every process is stopped at the end: a private
PostgreSQL server (initdb in a temporary folder, max_connections 100, so that an overloaded run cannot
take the connections of anyone else's server; `--shared-pg` uses BENCH_PG instead), Redis at
BENCH_REDIS_URL, one qcluster (Q_WORKERS=2), N daphne processes and haproxy in front of them (the
production set-up of README "Production"), with the environment of the processes as they come (the
project's defaults: DB_POOL_MAX=20, ASGI_THREADS=20 per web process).

For each number of daphne processes, a fresh 5,000-lead sandbox batch (300 ms latency, failure rate
0.05, concurrency 20) runs on the qcluster, and:

1. quiet: the batch's throughput over `--quiet-seconds` without HTTP load (leads finished per second);
2. status: `--clients` keep-alive connections (wrk, 2 threads) send `GET /api/batches/<id>/` with a
   token for `--seconds`, no think time; requests/s, p50 / p95 / p99, answers by status and socket
   errors; the batch's throughput meanwhile; through the balancer, `--ws-clients` WebSocket clients
   follow the same batch for the same window (each must get a message at least every 2 s);
3. mix: the same clients for `--mix-seconds` on the batch list, per-lead pages of the running batch,
   the cost preview of 1,000 leads (POST, token), the live page and its rows endpoint (staff session).

haproxy's statistics say how many requests and sockets each daphne served. The script runs unchanged
on an earlier commit (it needs only bench/_setup.py), which is how BENCHMARKS.md compares the two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _setup
from _setup import (
    DATABASE,
    LOG_DIR,
    ROOT,
    Figures,
    Processes,
    bench_env,
    django_setup,
    free_port,
    fresh_database,
    launch,
    lead_counts,
    log,
    make_leads,
    session_cookie,
    staff_user,
    wait_finished,
    wait_for,
)

DB = f"{DATABASE}_load"
FINISHED = ("succeeded", "failed", "skipped", "cancelled")

# wrk's Lua side: count answers by status per thread, print one JSON line at the end. The mix picks
# each request at random by weight; `requests` is filled in from Python.
WRK_COMMON = """
counts = {}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      totals[tostring(status)] = (totals[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(totals) do table.insert(parts, string.format('"%s": %d', status, n)) end
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"statuses": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.timeout))
end
"""

WRK_MIX = """
local weighted = {}
function init(args)
  counts = {}
  for _, item in ipairs(requests) do
    local raw = wrk.format(item.method, item.path, item.headers, item.body)
    for _ = 1, item.weight do table.insert(weighted, raw) end
  end
end
function request() return weighted[math.random(#weighted)] end
"""


def lua_string(value: str) -> str:
    return "[==[" + value + "]==]"


def mix_script(items: list[dict]) -> str:
    rows = []
    for item in items:
        headers = ", ".join(f"[ {lua_string(k)} ] = {lua_string(v)}" for k, v in item["headers"].items())
        body = lua_string(item["body"]) if item.get("body") else "nil"
        rows.append(
            f"{{method = {lua_string(item['method'])}, path = {lua_string(item['path'])}, "
            f"headers = {{{headers}}}, body = {body}, weight = {item['weight']}}}"
        )
    return "requests = {\n  " + ",\n  ".join(rows) + "\n}\n" + WRK_COMMON + WRK_MIX


def run_wrk(url: str, script: str, *, clients: int, seconds: int, headers: dict | None = None) -> dict:
    path = LOG_DIR / f"wrk-{time.monotonic_ns()}.lua"
    path.write_text(script)
    args = ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s", "-s", str(path)]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 90, check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK "))
    result = json.loads(line[4:])
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds
    ok = sum(n for status, n in result["statuses"].items() if status[0] in "23")
    result["ok_rps"] = ok / seconds
    return result


def wrk_summary(result: dict) -> str:
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(result["statuses"].items()))
    errors = {k: v for k, v in result["errors"].items() if v}
    p50, p95, p99 = (result[f"p{n}_us"] / 1000 for n in (50, 95, 99))
    return (
        f"{result['rps']:.0f} req/s ({result['ok_rps']:.0f} answered 2xx/3xx);"
        f" p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms; {statuses}"
        + (f"; socket errors {errors}" if errors else "")
    )


def server_errors(result: dict) -> int:
    return sum(n for status, n in result["statuses"].items() if status.startswith("5"))


class PrivatePostgres:
    """A PostgreSQL server of the benchmark's own on 127.0.0.1 (initdb, run as `postgres` when root)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="leadgen-load-pg-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        self.bin = bins[-1] if bins else Path(shutil.which("postgres") or "postgres").parent

    def _as_postgres(self, args: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args

    def __enter__(self) -> str:
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> str:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        subprocess.run(
            self._as_postgres([str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
            check=True,
            capture_output=True,
        )
        log_file = (LOG_DIR / "load-postgres.log").open("a")
        self.process = subprocess.Popen(
            self._as_postgres(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.dir),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "max_connections=100",
                ]
            ),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, 30, "the private PostgreSQL server")
        return f"postgres://postgres@127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(f"postgres://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            # The whole group (runuser and the server): SIGINT is PostgreSQL's fast shutdown.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


HAPROXY = """global
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    option http-keep-alive
    option forwardfor
frontend web
    bind 127.0.0.1:{port}
    default_backend daphne
backend daphne
    balance leastconn
{servers}
frontend stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


def start_haproxy(procs: Processes, backends: list[int]) -> tuple[int, int]:
    port, stats_port = free_port(), free_port()
    servers = "\n".join(f"    server daphne{n} 127.0.0.1:{p}" for n, p in enumerate(backends, 1))
    config = LOG_DIR / f"haproxy-{port}.cfg"
    config.write_text(HAPROXY.format(port=port, stats_port=stats_port, servers=servers))
    procs._start("haproxy", ["haproxy", "-db", "-f", str(config)], dict(os.environ))
    wait_for(lambda: _answers(f"http://127.0.0.1:{port}/admin/login/"), 30, "haproxy")
    return port, stats_port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def served_by_backend(stats_port: int) -> dict[str, int]:
    """Sessions each daphne took from haproxy so far (HTTP connections and WebSocket upgrades)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=5) as response:
        rows = csv.DictReader(io.StringIO(response.read().decode().lstrip("# ")))
        return {
            row["svname"]: int(row["stot"] or 0)
            for row in rows
            if row["pxname"] == "daphne" and row["svname"].startswith("daphne")
        }


def http_requests_by_backend(stats_port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=5) as response:
        rows = csv.DictReader(io.StringIO(response.read().decode().lstrip("# ")))
        return {
            row["svname"]: sum(int(row.get(f"hrsp_{k}xx") or 0) for k in range(1, 6))
            for row in rows
            if row["pxname"] == "daphne" and row["svname"].startswith("daphne")
        }


async def follow_sockets(url: str, headers: dict, clients: int, seconds: float) -> list[dict]:
    """`clients` sockets on the batch for `seconds`: each one's worst gap between messages and errors."""
    from websockets.asyncio.client import connect

    async def one() -> dict:
        arrivals, seqs = [], []
        try:
            async with connect(url, additional_headers=headers, open_timeout=30, max_size=2**22) as ws:
                start = time.monotonic()
                arrivals.append(start)
                while time.monotonic() - start < seconds:
                    with contextlib.suppress(TimeoutError):
                        raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
                        arrivals.append(time.monotonic())
                        seqs.append(json.loads(raw)["seq"])
                arrivals.append(time.monotonic())
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}", "worst_gap": float("inf"), "messages": 0}
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        increasing = all(b > a for a, b in itertools.pairwise(seqs))
        error = "" if increasing else "seq not increasing"
        return {"error": error, "worst_gap": max(gaps), "messages": len(seqs)}

    return await asyncio.gather(*(one() for _ in range(clients)))


class ConnectionPeak:
    """The most server connections seen at once on the bench database (sampled every 0.25 s)."""

    def __init__(self, url: str):
        import threading

        self.url, self.peak, self._stop = url, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _sample(self):
        import psycopg

        name = self.url.rsplit("/", 1)[1]
        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            while not self._stop.wait(0.25):
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]
                ).fetchone()
                self.peak = max(self.peak, count)


def finished_count(batch_id: int) -> int:
    counts = lead_counts(batch_id)
    return sum(counts.get(status, 0) for status in FINISHED)


def throughput_over(batch_id: int, seconds: float) -> float:
    before, started = finished_count(batch_id), time.monotonic()
    time.sleep(seconds)
    return (finished_count(batch_id) - before) / (time.monotonic() - started)


def run_topology(env: dict, args, daphnes: int, user, token: str, cookie: str, figures: Figures) -> dict:
    import threading

    from batches.services import batch_cancel

    label = f"{daphnes} daphne" + ("s" if daphnes > 1 else "")
    with Processes(f"load-{daphnes}") as procs:
        ports = [free_port() for _ in range(daphnes)]
        for n, port in enumerate(ports, 1):
            procs.daphne(env, port, label=f"daphne{n}")
        lb_port, stats_port = start_haproxy(procs, ports)
        base = f"http://127.0.0.1:{lb_port}"
        procs.qcluster(env)
        ids = make_leads(args.leads, prefix=f"load{daphnes}x{int(time.time())}")
        batch = launch(lead_ids=ids, concurrency=20, user=user, name=f"load {label}")
        wait_for(lambda: finished_count(batch.pk) >= 100, 180, "the batch to get going")

        quiet = throughput_over(batch.pk, args.quiet_seconds)
        log(f"{label}: batch {batch.pk} quiet throughput {quiet:.1f} leads/s")

        sockets: list[dict] = []
        ws_url = f"ws://127.0.0.1:{lb_port}/ws/batches/{batch.pk}/"
        ws_headers = {"Cookie": cookie, "Origin": base}
        follower = threading.Thread(
            target=lambda: sockets.extend(
                asyncio.run(follow_sockets(ws_url, ws_headers, args.ws_clients, args.seconds - 5))
            ),
            daemon=True,
        )
        follower.start()
        before, started = finished_count(batch.pk), time.monotonic()
        with ConnectionPeak(env["DATABASE_URL"]) as connections_seen:
            status = run_wrk(
                f"{base}/api/batches/{batch.pk}/",
                WRK_COMMON,
                clients=args.clients,
                seconds=args.seconds,
                headers={"Authorization": f"Token {token}"},
            )
        loaded = (finished_count(batch.pk) - before) / (time.monotonic() - started)
        follower.join(30)
        still_running = lead_counts(batch.pk).get("pending", 0) > 0
        log(f"{label}: status {wrk_summary(status)}; batch {loaded:.1f} leads/s under load")

        api = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        page = {"Cookie": cookie}
        preview_body = json.dumps({"lead_ids": ids[:1000]})
        leads_pages = max(1, args.leads // 50)
        mix = [
            {"method": "GET", "path": "/api/batches/", "headers": api, "weight": 4},
            *(
                {"method": "GET", "path": f"/api/batches/{batch.pk}/leads/?page={p}", "headers": api}
                | {"weight": 1}
                for p in range(1, min(leads_pages, 20) + 1)
            ),
            {"method": "POST", "path": "/api/batches/preview/", "headers": api, "body": preview_body}
            | {"weight": 1},
            {"method": "GET", "path": f"/batches/{batch.pk}/", "headers": page, "weight": 3},
            {"method": "GET", "path": f"/batches/{batch.pk}/rows/", "headers": page, "weight": 3},
        ]
        mixed = run_wrk(base + "/", mix_script(mix), clients=args.clients, seconds=args.mix_seconds)
        log(f"{label}: mix {wrk_summary(mixed)}")
        sessions = served_by_backend(stats_port)
        requests = http_requests_by_backend(stats_port)
        log(f"{label}: haproxy sessions by daphne {sessions}, HTTP answers by daphne {requests}")
        batch_cancel(batch=batch, user=user)
        wait_finished(batch.pk, timeout=180)

    ws_ok = [s for s in sockets if not s["error"] and s["worst_gap"] <= 2.0]
    ws_errors = [s["error"] for s in sockets if s["error"]]
    per_daphne = status["ok_rps"] / daphnes
    figures.add(
        f"{label}: status API, {args.clients} clients, {args.seconds} s",
        wrk_summary(status),
        "no 5xx",
        server_errors(status) == 0 and not any(status["errors"].values()),
    )
    figures.add(f"{label}: status API requests/s answered 2xx/3xx per daphne process", f"{per_daphne:.0f}")
    figures.add(f"{label}: most PostgreSQL connections at once meanwhile", str(connections_seen.peak))
    figures.add(
        f"{label}: batch throughput under that load / without",
        f"{loaded:.1f} / {quiet:.1f} leads/s = {loaded / quiet:.2f}x",
        ">= 0.7x",
        loaded / quiet >= 0.7 and still_running,
    )
    figures.add(
        f"{label}: mix (batch list, lead pages, preview of 1,000, live page and rows), {args.mix_seconds} s",
        wrk_summary(mixed),
        "no 5xx",
        server_errors(mixed) == 0 and not any(mixed["errors"].values()),
    )
    figures.add(
        f"{label}: WebSocket clients through the balancer, every gap <= 2 s",
        f"{len(ws_ok)}/{len(sockets)}" + (f" ({ws_errors[0]})" if ws_errors else ""),
        "all",
        len(ws_ok) == len(sockets) == args.ws_clients,
    )
    figures.add(
        f"{label}: HTTP answers by daphne (haproxy)",
        ", ".join(f"{name} {n}" for name, n in sorted(requests.items())),
        "each daphne serves" if daphnes > 1 else "",
        all(n > 0 for n in requests.values()) if daphnes > 1 else None,
    )
    return {
        "daphnes": daphnes,
        "status": status,
        "mix": mixed,
        "quiet": quiet,
        "loaded": loaded,
        "connections_peak": connections_seen.peak,
        "answers_by_daphne": requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--mix-seconds", type=int, default=30)
    parser.add_argument("--quiet-seconds", type=float, default=20.0)
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--ws-clients", type=int, default=20)
    parser.add_argument("--daphnes", default="1,2", help="comma-separated numbers of daphne processes")
    parser.add_argument("--label", default=ROOT.name, help="names the run in the figures")
    parser.add_argument("--shared-pg", action="store_true", help="use BENCH_PG rather than a private server")
    args = parser.parse_args()
    for tool in ("wrk", "haproxy"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install -y wrk haproxy")

    with contextlib.ExitStack() as stack:
        if not args.shared_pg:
            _setup.PG = stack.enter_context(PrivatePostgres())
        env = bench_env(DB, SANDBOX_LATENCY_MS="300", SANDBOX_FAILURE_RATE="0.05")
        env["DATABASE_URL"] = f"{_setup.PG}/{DB}"
        fresh_database(env)
        django_setup(env)
        user, token = staff_user()
        cookie = session_cookie(user)
        figures = Figures(
            f"Web tier under load ({args.label}): wrk -> haproxy -> daphne, qcluster Q_WORKERS=2, "
            f"PostgreSQL + Redis, {args.leads}-lead batch at concurrency 20"
        )
        results = [
            run_topology(env, args, int(n), user, token, cookie, figures) for n in args.daphnes.split(",")
        ]
        from django.db import connections

        connections.close_all()
        (LOG_DIR / f"load-{args.label}.json").write_text(json.dumps(results, indent=1))
    figures.exit()


if __name__ == "__main__":
    main()
