"""The connection pool across `fork()`: a child process starts with a pool of its own.

django-q2 forks its worker processes from a parent that has used the database, so the child inherits
the parent's pool object: its connections are the parent's sockets and its maintenance threads did not
survive the fork. The child forgets them (keeping the objects alive, so that no finaliser closes a
socket the parent still uses) and opens its own pool on its first query.
"""

from __future__ import annotations

import os

_inherited: list[object] = []
_registered = False


def _forget_inherited_pools() -> None:
    from django.db import connections
    from django.db.backends.postgresql.base import DatabaseWrapper

    _inherited.extend(DatabaseWrapper._connection_pools.values())
    DatabaseWrapper._connection_pools.clear()
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _inherited.append(connection.connection)
            connection.connection = None


def register() -> None:
    """Once per process (AppConfig.ready)."""
    global _registered
    if not _registered:
        os.register_at_fork(after_in_child=_forget_inherited_pools)
        _registered = True
