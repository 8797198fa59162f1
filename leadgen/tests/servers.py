"""Local HTTP servers for the hostile-input suites.

`Canary` stands in for an internal service on 127.0.0.1 (and [::1] when the machine has it): it counts
every request it gets, and a request that reaches it is a hole in the egress policy. `Site` stands in
for a public web site on 127.0.0.2, the one loopback address the suites let through with
EGRESS_ALLOWED_NETWORKS, and answers each path with a scripted behaviour (a page, a redirect, a gzip
bomb, a slow drip, an error page with secrets in it).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SITE_ADDRESS = "127.0.0.2"
SECRET = "INTERNAL-SECRET-7f3a"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Counting(BaseHTTPRequestHandler):
    def _serve(self):
        self.server.hits.append((self.command, self.path, self.headers.get("Host", "")))
        body = f"<html><title>{SECRET}</title><h1>{SECRET}</h1></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_PUT = _serve

    def log_message(self, format, *args):
        pass


class Canary:
    """Counts every request to 127.0.0.1:<port> (and [::1]:<port> when available)."""

    def __init__(self):
        self.hits: list[tuple[str, str, str]] = []
        self._servers = [_Server(("127.0.0.1", 0), _Counting)]
        self.port = self._servers[0].server_port
        self.ipv6 = False
        try:

            class _V6(_Server):
                address_family = socket.AF_INET6

            self._servers.append(_V6(("::1", self.port), _Counting))
            self.ipv6 = True
        except OSError:
            pass
        for server in self._servers:
            server.hits = self.hits

    def __enter__(self) -> Canary:
        for server in self._servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        for server in self._servers:
            server.shutdown()
            server.server_close()


Route = Callable[[BaseHTTPRequestHandler], None]


class _SiteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.requests.append((self.command, self.path, self.headers.get("Host", "")))
        route = self.server.routes.get(self.path.split("?")[0])
        try:
            if route is None:
                self.send(404, b"not scripted")
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _serve

    def log_message(self, format, *args):
        pass


class Site:
    """A scripted web site on 127.0.0.2:<port>; `route(path, fn)` where fn(handler) answers."""

    def __init__(self):
        self._server = _Server((SITE_ADDRESS, 0), _SiteHandler)
        self._server.routes = {}
        self._server.requests = []
        self.port = self._server.server_port
        self.base_url = f"http://{SITE_ADDRESS}:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str, str]]:
        return self._server.requests

    def route(self, path: str, answer: Route) -> str:
        self._server.routes[path] = answer
        return f"{self.base_url}{path}"

    def page(self, path: str, body: bytes | str, headers: dict[str, str] | None = None, status=200) -> str:
        content = body.encode() if isinstance(body, str) else body
        return self.route(
            path,
            lambda h: h.send(
                status, content, {"Content-Type": "text/html; charset=utf-8", **(headers or {})}
            ),
        )

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self.route(path, lambda h: h.send(status, b"", {"Location": location}))

    def drip(self, path: str, *, every: float, pieces: int, headers_first: bool = True) -> str:
        """Headers at once (or the status line only), then one byte every `every` seconds."""

        def answer(handler):
            if headers_first:
                handler.send_response(200)
                handler.send_header("Content-Type", "text/html")
                handler.send_header("Content-Length", str(pieces))
                handler.end_headers()
            else:
                handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            handler.wfile.flush()
            for _ in range(pieces):
                time.sleep(every)
                handler.wfile.write(b"x" if headers_first else b"X-Drip: 1\r\n")
                handler.wfile.flush()

        return self.route(path, answer)

    def __enter__(self) -> Site:
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
