"""1,000 concurrent WebSocket clients on one running batch: one daphne process, one qcluster (Q_WORKERS=2).

    .venv/bin/python bench/ws.py [--clients 1000] [--seconds 30]

A batch of 5,000 leads (300 ms latency, failure rate 0.05, concurrency 20) runs while `--clients`
asyncio clients (the `websockets` library, in this process) connect to `/ws/batches/<id>/` with a
staff user's session cookie and an Origin that matches ALLOWED_HOSTS. Once all are connected the
measurement window of `--seconds` starts; for every client it records the arrival time of each message.

- share of clients whose every gap is <= 2 s (the gaps between consecutive messages in the window, and
  from the window's start to the first message and from the last one to the window's end) -> 100%;
- messages per client per second: the most any client received in the window / its length -> <= 1;
- every message carries a strictly increasing `seq`; the batch is still running at the window's end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

from _setup import (
    DATABASE,
    LOG_DIR,
    Figures,
    Processes,
    batch_status,
    bench_env,
    django_setup,
    free_port,
    fresh_database,
    launch,
    lead_counts,
    log,
    make_leads,
    percentile,
    py_spy,
    session_cookie,
    staff_user,
    summarize_profile,
    wait_finished,
    wait_for,
)

DB = f"{DATABASE}_ws"
MAX_GAP = 2.0


class Client:
    def __init__(self):
        self.arrivals: list[float] = []
        self.seqs: list[int] = []
        self.kinds: list[str] = []
        self.error: str = ""
        self.connected = asyncio.Event()


async def follow(client: Client, url: str, headers: dict, stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    try:
        async with connect(url, additional_headers=headers, open_timeout=60, max_size=2**22) as socket:
            client.connected.set()
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(socket.recv(), timeout=0.5)
                except TimeoutError:
                    continue
                client.arrivals.append(time.monotonic())
                message = json.loads(raw)
                client.seqs.append(message["seq"])
                client.kinds.append(message["type"])
    except Exception as exc:
        client.error = f"{type(exc).__name__}: {exc}"
        client.connected.set()


async def measure(
    url: str, headers: dict, clients: int, seconds: float
) -> tuple[list[Client], float, float, float]:
    stop = asyncio.Event()
    followers = [Client() for _ in range(clients)]
    tasks = []
    started = time.monotonic()
    for start in range(0, clients, 50):
        chunk = followers[start : start + 50]
        tasks += [asyncio.ensure_future(follow(client, url, headers, stop)) for client in chunk]
        await asyncio.gather(*(client.connected.wait() for client in chunk))
    connect_seconds = time.monotonic() - started
    window_start = time.monotonic()
    await asyncio.sleep(seconds)
    window_end = time.monotonic()
    stop.set()
    await asyncio.gather(*tasks)
    return followers, connect_seconds, window_start, window_end


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--profile", action="store_true", help="py-spy daphne during the window")
    args = parser.parse_args()

    env = bench_env(DB, SANDBOX_LATENCY_MS="300", SANDBOX_FAILURE_RATE="0.05")
    fresh_database(env)
    django_setup(env)
    ids = make_leads(args.leads, prefix=f"ws{int(time.time())}")
    user, _ = staff_user()
    cookie = session_cookie(user)
    port = free_port()
    figures = Figures(f"WebSocket ({args.clients} clients, one daphne, one qcluster Q_WORKERS=2)")
    with Processes("ws") as procs:
        web = procs.daphne(env, port)
        procs.qcluster(env)
        batch = launch(lead_ids=ids, concurrency=20, user=user)
        wait_for(lambda: lead_counts(batch.pk).get("succeeded", 0) >= 20, 120, "the batch to get going")
        url = f"ws://127.0.0.1:{port}/ws/batches/{batch.pk}/"
        headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
        spy = py_spy(web.pid, LOG_DIR / "profile-daphne.txt") if args.profile else None
        followers, connect_seconds, window_start, window_end = asyncio.run(
            measure(url, headers, args.clients, args.seconds)
        )
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            summarize_profile(LOG_DIR / "profile-daphne.txt")
        still_running = batch_status(batch.pk) == "running"
        from batches.services import batch_cancel

        batch_cancel(batch=batch, user=user)
        wait_finished(batch.pk, timeout=120)

    window = window_end - window_start
    failed = [client for client in followers if client.error]
    ok_gaps = 0
    worst_gaps = []
    rates = []
    seq_broken = 0
    for client in followers:
        times = [t for t in client.arrivals if window_start <= t <= window_end]
        points = [window_start, *times, window_end]
        gaps = [b - a for a, b in itertools.pairwise(points)]
        worst = max(gaps) if gaps else window
        worst_gaps.append(worst)
        if not client.error and worst <= MAX_GAP:
            ok_gaps += 1
        rates.append(len(times) / window)
        if any(b <= a for a, b in zip(client.seqs, client.seqs[1:], strict=False)):
            seq_broken += 1
    if failed:
        log(f"{len(failed)} clients failed, e.g. {failed[0].error}")
    share = ok_gaps / len(followers)
    top_rate = max(rates)
    log(
        f"connected {args.clients} clients in {connect_seconds:.1f}s; window {window:.1f}s; "
        f"worst gap p50 {percentile(worst_gaps, 0.5):.2f}s max {max(worst_gaps):.2f}s; "
        f"msgs/s mean {sum(rates) / len(rates):.2f} max {top_rate:.2f}; seq broken {seq_broken}; "
        f"batch still running at the end: {still_running}"
    )
    figures.add(
        f"clients whose every gap <= 2 s ({args.clients} clients, {window:.0f} s window)",
        f"{share * 100:.1f}% (worst gap {max(worst_gaps):.2f} s; {len(failed)} clients failed)",
        "100%",
        share == 1.0 and still_running,
    )
    figures.add(
        "messages per client per second (max over clients)",
        f"{top_rate:.2f} (mean {sum(rates) / len(rates):.2f})",
        "<= 1",
        top_rate <= 1.0,
    )
    figures.add("clients with a non-increasing seq", str(seq_broken), "0", seq_broken == 0)
    figures.add("time to connect all clients (50 at a time)", f"{connect_seconds:.1f} s")
    figures.exit()


if __name__ == "__main__":
    main()
