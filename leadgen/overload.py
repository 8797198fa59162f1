"""Overload answers 503, never 500: no database connection within DB_POOL_TIMEOUT, or no free thread of
the web process within ASGI_QUEUE_TIMEOUT.

The API answers `{"detail": ...}` JSON, every other page plain text; both carry `Retry-After`. Nothing
is logged as an error and no traceback is shown, whatever DEBUG says: an overloaded server is a state,
not a bug.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.db import OperationalError
from django.http import HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
API_PREFIX = "/api/"
DETAIL = "The service is busy; try again in a few seconds."
# PostgreSQL refusing a connection because it has too many, or is starting or stopping.
REFUSED_SQLSTATES = frozenset({"53300", "57P03"})


def is_overload(exc: BaseException) -> bool:
    """A database error that says "no connection to be had now" (rather than a broken query)."""
    from psycopg_pool import PoolTimeout

    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    return isinstance(cause, PoolTimeout) or getattr(cause, "sqlstate", None) in REFUSED_SQLSTATES


def overload_response(path: str) -> HttpResponse:
    if path.startswith(API_PREFIX):
        response = JsonResponse({"detail": DETAIL}, status=503)
    else:
        response = HttpResponse(DETAIL + "\n", status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    # Logged once as a warning by whoever answers; Django would log every 503 again as an error.
    response._has_been_logged = True
    return response


class OverloadMiddleware(MiddlewareMixin):
    """Turns an overload raised by a view (the API's views included) into the 503 answer.

    Synchronous and asynchronous alike (MiddlewareMixin), so it adds no thread hop to a request.
    """

    def process_exception(self, request, exception):
        if is_overload(exception):
            logger.warning("503 for %s %s: %s", request.method, request.path, exception)
            return overload_response(request.path)
        return None


class _Threads:
    """Long-lived single-thread executors handed out first come, first served.

    A thread released while requests wait goes to the oldest of them; none is taken by a request that
    arrives later (with a plain queue, newcomers would grab freed threads ahead of those waiting, and a
    few unlucky requests would wait out the whole timeout).
    """

    def __init__(self, count: int):
        self._free = collections.deque(
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"http-{n}") for n in range(count)
        )
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self, timeout: float) -> ThreadPoolExecutor:
        if self._free and not self._waiters:
            return self._free.popleft()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except BaseException:  # the time ran out, or the request was cancelled while it waited
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed over just then: pass it on
            else:
                waiter.cancel()
            raise
        return waiter.result()

    def release(self, executor: ThreadPoolExecutor) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(executor)
                return
        self._free.append(executor)


class BoundedHTTP:
    """ASGI wrapper: HTTP requests of this process run on ASGI_THREADS threads, one request per thread.

    Django runs each request's synchronous part on the thread of its "thread-sensitive context", by
    default a new thread per request: unbounded, and a thread started for every request. Here each
    request borrows one of ASGI_THREADS long-lived single-thread executors for its context (asgiref's
    `ThreadSensitiveContext(executor=...)`), holding a database connection from its first query to its
    end, so the threads match the pool. A request queues (first come, first served) up to
    ASGI_QUEUE_TIMEOUT for a free thread, at no cost to the event loop, then gets the 503 answer.
    Threads are kept per event loop.
    """

    def __init__(self, app):
        self.app = app
        self._threads: dict[asyncio.AbstractEventLoop, _Threads] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        threads = self._threads.get(loop) or self._threads.setdefault(loop, _Threads(settings.ASGI_THREADS))
        try:
            executor = await threads.acquire(settings.ASGI_QUEUE_TIMEOUT)
        except TimeoutError:
            logger.warning("503 for %s %s: no free web thread", scope.get("method"), scope.get("path"))
            return await _send_response(send, overload_response(scope.get("path", "")))
        try:
            async with ThreadSensitiveContext(executor=executor):
                return await self.app(scope, receive, send)
        finally:
            threads.release(executor)


async def _send_response(send, response: HttpResponse) -> None:
    headers = [(name.lower().encode(), value.encode()) for name, value in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
