"""Overload answers 503, never 500: no database connection within DB_POOL_TIMEOUT, or no turn on the
web process's threads within it.

The API answers `{"detail": ...}` JSON, every other page plain text; both carry `Retry-After`. Nothing
is logged as an error and no traceback is shown, whatever DEBUG says: an overloaded server is a state,
not a bug.
"""

from __future__ import annotations

import asyncio
import logging

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


class BoundedHTTP:
    """ASGI wrapper: at most ASGI_THREADS HTTP requests of this process run at once.

    Django runs each request's synchronous part on a thread of its own, holding a database connection
    from its first query to its end, so the turns match the pool. A request waits up to
    DB_POOL_TIMEOUT for a turn, then gets the 503 answer. Turns are counted per event loop.
    """

    def __init__(self, app):
        self.app = app
        self._turns: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        turns = self._turns.get(loop)
        if turns is None:
            turns = self._turns.setdefault(loop, asyncio.Semaphore(settings.ASGI_THREADS))
        try:
            await asyncio.wait_for(turns.acquire(), settings.DB_POOL_TIMEOUT)
        except TimeoutError:
            logger.warning("503 for %s %s: no free web thread", scope.get("method"), scope.get("path"))
            return await _send_response(send, overload_response(scope.get("path", "")))
        try:
            return await self.app(scope, receive, send)
        finally:
            turns.release()


async def _send_response(send, response: HttpResponse) -> None:
    headers = [(name.lower().encode(), value.encode()) for name, value in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
